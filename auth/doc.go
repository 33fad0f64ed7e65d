// Package auth holds cairn's security primitives: TLS configurations that
// reload certificates from disk, identities, ACL rules and their evaluation,
// user passwords and bearer tokens, allowed hosts, connection and in-flight
// limits. It decides nothing about where data lives: the kv service asks it
// whether an identity may do an action on a key, the front ends ask it who a
// connection or request is.
//
// # Identities
//
// An identity is a name. It comes from exactly one of, in this order:
//
//  1. credentials the client sent: RESP AUTH user password, HTTP Basic
//     (a user's password) or an HTTP bearer token (which belongs to a user);
//     wrong credentials are an error, never a fall back to anonymous;
//  2. the CN of a client certificate verified on this very TLS connection;
//  3. otherwise the anonymous identity, whose name is "".
//
// Headers a proxy could set (X-Forwarded-*, X-Remote-User) are never used. A
// certificate CN and a user of the same name are the same identity (as in
// etcd), so give certificate holders and password users distinct names.
//
// # Rules
//
// Rules are ordered; each is {identity regex, keys, actions, effect}. The
// identity regex must match the whole name (".*" also matches anonymous,
// ".+" only authenticated identities). Keys is a prefix ("" is every key) or,
// with keys_regex, a regex matched against the whole key. The first rule
// whose identity, keys and actions match decides (allow, or deny); when none
// matches the answer is deny. With no rules at all, everything is allowed:
// that is the embedded single-node default. Admin actions (membership,
// snapshots, users and rules) are not about keys: a rule grants admin by
// listing the action, whatever its keys say. The metrics action (reading
// /metrics) is the same, and admin implies it.
//
// A range operation (delete of a prefix) is allowed only when the whole range
// is: a rule that covers the whole range decides; an allow rule that covers
// only part of it does not count; a deny rule that touches any part of it
// denies. A regex rule cannot be proven to cover a range, so it never allows
// one (it can deny one).
//
// Rules and users come from two layers: the config file of each node (the
// same on every node, read at start) and the replicated layer managed at run
// time through the admin API, stored through the Raft log. Config rules are
// evaluated before replicated rules; a user name defined in the config file
// cannot be redefined at run time.
package auth
