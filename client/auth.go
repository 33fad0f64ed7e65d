package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// Rule is an ACL rule (see docs/SECURITY.md).
type Rule struct {
	Identity  string   `json:"identity" yaml:"identity"`
	Keys      string   `json:"keys,omitempty" yaml:"keys"`
	KeysRegex string   `json:"keys_regex,omitempty" yaml:"keys_regex"`
	Actions   []string `json:"actions" yaml:"actions"`
	Effect    string   `json:"effect,omitempty" yaml:"effect"`
}

// Rules are the config file's rules (evaluated first, read-only through the
// API) and the replicated ones.
type Rules struct {
	Config []Rule `json:"config,omitempty"`
	Rules  []Rule `json:"rules"`
}

// User describes a user without its secrets.
type User struct {
	Name        string   `json:"name"`
	HasPassword bool     `json:"has_password"`
	Tokens      []string `json:"tokens"`
	Source      string   `json:"source"`
}

// Identity is who the server takes the client for.
type Identity struct {
	Identity string `json:"identity"`
	Via      string `json:"via"`
}

// WhoAmI asks the server who it takes this client for.
func (c *Client) WhoAmI(ctx context.Context) (*Identity, error) {
	var out Identity
	_, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/auth/whoami"}, &out)
	return &out, err
}

// Users lists users (admin).
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var out struct {
		Users []User `json:"users"`
	}
	_, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/auth/users"}, &out)
	return out.Users, err
}

// PutUser creates a user or sets its password (admin).
func (c *Client) PutUser(ctx context.Context, name, password string) error {
	b, _ := json.Marshal(map[string]string{"password": password})
	_, err := c.call(ctx, request{method: http.MethodPut, path: "/v1/auth/users/" + url.PathEscape(name), body: b}, nil)
	return err
}

// DeleteUser removes a user (admin).
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: "/v1/auth/users/" + url.PathEscape(name)}, nil)
	return err
}

// AddToken issues a bearer token for a user (admin); the token is shown once.
func (c *Client) AddToken(ctx context.Context, user string) (token, id string, err error) {
	var out struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	_, err = c.call(ctx, request{method: http.MethodPost, path: "/v1/auth/users/" + url.PathEscape(user) + "/tokens"}, &out)
	return out.Token, out.ID, err
}

// DeleteToken revokes a token (admin).
func (c *Client) DeleteToken(ctx context.Context, user, id string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete,
		path: "/v1/auth/users/" + url.PathEscape(user) + "/tokens/" + url.PathEscape(id)}, nil)
	return err
}

// Rules returns the ACL rules (admin).
func (c *Client) Rules(ctx context.Context) (*Rules, error) {
	var out Rules
	_, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/auth/rules"}, &out)
	return &out, err
}

// SetRules replaces the replicated rules (admin).
func (c *Client) SetRules(ctx context.Context, rules []Rule) (*Rules, error) {
	if rules == nil {
		rules = []Rule{}
	}
	b, _ := json.Marshal(map[string][]Rule{"rules": rules})
	var out Rules
	_, err := c.call(ctx, request{method: http.MethodPut, path: "/v1/auth/rules", body: b}, &out)
	return &out, err
}
