package kv

import (
	"context"
	"fmt"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/keyspace"
)

// Placement is implemented by an engine that places keys on a hash ring
// (the eventual engine): where a key lives and how healthy each node looks
// from here.
type Placement interface {
	// Ring describes the ring, and with a non-empty key that key's
	// preference list for a keyspace that keeps replicas copies (0: every
	// member).
	Ring(key string, replicas int) *RingInfo
	// Health is each member's health as this node's failure detector sees
	// it, by name.
	Health() map[string]string
}

// Health of a member as the failure detector sees it.
const (
	HealthSelf       = "self"       // this node
	HealthHealthy    = "healthy"    // answering
	HealthDamaged    = "damaged"    // missed its heartbeats: coordinators skip it
	HealthValidating = "validating" // answering again, not yet for long enough to take traffic
)

// RingInfo is the ring as GET /v1/ring shows it.
type RingInfo struct {
	Vnodes  int          `json:"vnodes"`
	Members []RingMember `json:"members"`
	// For a key: its hash, keyspace and mode, and for an eventual key the
	// preference list (the first Replicas members clockwise from the hash).
	Key        string   `json:"key,omitempty"`
	Hash       string   `json:"hash,omitempty"`
	Keyspace   *string  `json:"keyspace,omitempty"`
	Mode       string   `json:"mode,omitempty"`
	Replicas   int      `json:"replicas,omitempty"`
	Preference []string `json:"preference,omitempty"`
}

// RingMember is one member on the ring.
type RingMember struct {
	Name   string `json:"name"`
	Health string `json:"health"`
	// Share is the fraction of the ring's hashes whose first owner is this
	// member.
	Share float64 `json:"share"`
}

// Ring describes the hash ring and, for a non-empty key, where the key
// lives (read permission on the key is needed, as for a Get).
func (s *Service) Ring(ctx context.Context, key string) (*RingInfo, error) {
	pl := s.placement()
	if pl == nil {
		return nil, fmt.Errorf("%w: this node has no eventual engine", ErrUnsupportedMode)
	}
	if key == "" {
		if _, err := s.authView().caller(ctx); err != nil {
			return nil, err
		}
		return pl.Ring("", 0), nil
	}
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if err := s.allow(ctx, auth.Read, key); err != nil {
		return nil, err
	}
	p := s.ctl.Keyspaces().Lookup(key)
	info := pl.Ring(key, p.Replicas)
	info.Keyspace, info.Mode = &p.Prefix, string(p.Mode)
	if p.Mode != keyspace.Eventual {
		info.Preference, info.Replicas = nil, 0
	}
	return info, nil
}

func (s *Service) placement() Placement {
	pl, _ := s.engines[keyspace.Eventual].(Placement)
	return pl
}
