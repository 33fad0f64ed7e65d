package model

import (
	"encoding/json"
	"fmt"
	"os"
)

// History is a recorded history with the faults injected while it was
// recorded, as saved to disk so that a failed or slow check can be run
// again without a cluster.
type History struct {
	Name   string       `json:"name"`
	Ops    []*Op        `json:"ops"`
	Faults []Annotation `json:"faults"`
}

// Save writes h to path as JSON.
func (h *History) Save(path string) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Load reads a history written by Save.
func Load(path string) (*History, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var h History
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("model: %s: %w", path, err)
	}
	return &h, nil
}
