package auth

import "context"

// Identity is who is asking.
type Identity struct {
	// Name is the user, token owner or certificate CN; "" is anonymous.
	Name string
	// Via says how the identity was established: "password", "token",
	// "cert", "anonymous" or "system".
	Via string
}

// Anonymous is a client that presented nothing.
var Anonymous = Identity{Via: "anonymous"}

// System is cairn itself (the TTL sweep, publishing its own addresses); it is
// allowed everything and is never given to a client.
var System = Identity{Name: "cairn:system", Via: "system"}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity in ctx; a context without one is anonymous.
func FromContext(ctx context.Context) Identity {
	if id, ok := ctx.Value(identityKey{}).(Identity); ok {
		return id
	}
	return Anonymous
}
