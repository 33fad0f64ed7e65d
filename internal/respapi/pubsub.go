package respapi

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strings"
	"time"

	"github.com/cairnkv/cairn/kv"
)

// Keyspace notifications, as Redis publishes them: a change of key k is
// published on __keyspace@0__:k with the event's name as the message, and
// on __keyevent@0__:<event> with the key as the message, when
// notify-keyspace-events enables the channel kind (K, E) and the event's
// class (g, $, x).
//
// cairn is not a pub/sub broker: the only messages are these notifications.
// A connection that subscribes to a channel or pattern that can match a
// notification channel opens a watch of the kv service (Service.Watch) for
// the narrowest key prefixes its subscriptions need, under its own identity,
// so the service's ACL filter decides which keys it hears about. One
// goroutine per watch turns events into messages and writes them to the
// connection under c.wmu, the lock every reply is written under too, so a
// message never lands inside a reply.
//
// A watch that the service drops (the connection fell behind, the engine
// replaced its state) is resumed from the revision after the last event it
// delivered when that is a strong revision; otherwise the connection gets
// an error and is closed, as Redis closes a subscriber over its output
// buffer limit, and the client reconnects and subscribes again.

// Notification channel prefixes (database 0 only).
const (
	keyspaceChannel = "__keyspace@0__:"
	keyeventChannel = "__keyevent@0__:"
)

// Event names, as Redis names the commands that cause them.
const (
	eventSet     = "set"     // every put: SET and the commands that write a value or a TTL
	eventDel     = "del"     // every delete by a command: DEL, GETDEL, UNLINK, …
	eventExpired = "expired" // a strong key's TTL ran out
)

// notifyFlags is the notify-keyspace-events setting.
type notifyFlags uint32

const (
	notifyKeyspace notifyFlags = 1 << iota // K: __keyspace@0__:<key>
	notifyKeyevent                         // E: __keyevent@0__:<event>
	notifyGeneric                          // g: del
	notifyString                           // $: set
	notifyExpired                          // x: expired
)

// notifyAll is what A stands for: every class cairn has.
const notifyAll = notifyGeneric | notifyString | notifyExpired

// msgBadNotifyFlags explains a refused notify-keyspace-events value.
const msgBadNotifyFlags = "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character %q. cairn supports K, E, g (del), $ (set), x (expired, strong keys) and A (g$x); " +
	"it evicts nothing (e), and it has no lists, sets, hashes, sorted sets, streams or key-miss events"

// parseNotifyFlags parses a notify-keyspace-events value. It refuses (with
// the first such letter) the classes cairn cannot honour rather than
// accepting one it would never deliver.
func parseNotifyFlags(s string) (f notifyFlags, bad rune, ok bool) {
	for _, ch := range s {
		switch ch {
		case 'K':
			f |= notifyKeyspace
		case 'E':
			f |= notifyKeyevent
		case 'g':
			f |= notifyGeneric
		case '$':
			f |= notifyString
		case 'x':
			f |= notifyExpired
		case 'A':
			f |= notifyAll
		default:
			return 0, ch, false
		}
	}
	return f, 0, true
}

// String is the setting in Redis's canonical form (CONFIG GET).
func (f notifyFlags) String() string {
	var b strings.Builder
	if f&notifyAll == notifyAll {
		b.WriteByte('A')
	} else {
		if f&notifyGeneric != 0 {
			b.WriteByte('g')
		}
		if f&notifyString != 0 {
			b.WriteByte('$')
		}
		if f&notifyExpired != 0 {
			b.WriteByte('x')
		}
	}
	if f&notifyKeyspace != 0 {
		b.WriteByte('K')
	}
	if f&notifyKeyevent != 0 {
		b.WriteByte('E')
	}
	return b.String()
}

// Bounds of one connection's notification feed.
const (
	// maxFeedWatches bounds the watches one connection opens; subscriptions
	// that need more prefixes share one watch of their common prefix.
	maxFeedWatches = 32
	// pushWriteTimeout bounds a write of messages to a subscriber that does
	// not read; the connection is closed when it passes.
	pushWriteTimeout = time.Minute
)

func pubsubCommands() []*command {
	const ps = flagNoMulti | flagNoState | flagPubSub
	return []*command{
		{name: "subscribe", arity: -2, flags: ps, run: runSubscribe(false)},
		{name: "psubscribe", arity: -2, flags: ps, run: runSubscribe(true)},
		{name: "unsubscribe", arity: -1, flags: ps, run: runUnsubscribe(false)},
		{name: "punsubscribe", arity: -1, flags: ps, run: runUnsubscribe(true)},
		{name: "publish", arity: 3, flags: flagNoMulti | flagNoState, run: runPublish},
	}
}

// msgSubscribedOnly is Redis's answer to another command in subscribed mode.
const msgSubscribedOnly = "ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"

// subscribed reports whether the connection is in Redis's subscribed mode.
func (c *conn) subscribed() bool { return len(c.channels)+len(c.patterns) > 0 }

func (c *conn) subCount() int64 { return int64(len(c.channels) + len(c.patterns)) }

// runSubscribe is SUBSCRIBE channel… and PSUBSCRIBE pattern…: one
// confirmation per argument with the connection's subscription count. A
// subscription whose keys the node cannot watch (the prefix spans strong
// and eventual keyspaces, the identity may not watch) is refused with an
// error in place of its confirmation, and not kept.
func runSubscribe(pattern bool) func(context.Context, *conn, [][]byte) []byte {
	kind := "subscribe"
	if pattern {
		kind = "psubscribe"
	}
	return func(_ context.Context, c *conn, a [][]byte) []byte {
		set := &c.channels
		if pattern {
			set = &c.patterns
		}
		if *set == nil {
			*set = map[string]struct{}{}
		}
		var out []byte
		c.wmu.Lock()
		c.hold = true // until the confirmations are written (installView)
		c.wmu.Unlock()
		c.viewDirty = true
		for _, arg := range a[1:] {
			name := string(arg)
			if _, ok := (*set)[name]; !ok {
				(*set)[name] = struct{}{}
				if err := c.syncFeed(); err != nil {
					delete(*set, name)
					out = append(out, replyErr(fmt.Sprintf("ERR cannot deliver the keyspace notifications of %q: %s", name, trimKV(err)))...)
					continue
				}
				c.viewDirty = true
			}
			out = appendPush(out, kind, name, c.subCount())
		}
		return out
	}
}

// runUnsubscribe is UNSUBSCRIBE [channel…] and PUNSUBSCRIBE [pattern…]:
// without arguments every channel (pattern), in order; with none to
// remove, one confirmation with a null name, as Redis answers.
func runUnsubscribe(pattern bool) func(context.Context, *conn, [][]byte) []byte {
	kind := "unsubscribe"
	if pattern {
		kind = "punsubscribe"
	}
	return func(_ context.Context, c *conn, a [][]byte) []byte {
		set := c.channels
		if pattern {
			set = c.patterns
		}
		names := make([]string, 0, len(a)-1)
		for _, arg := range a[1:] {
			names = append(names, string(arg))
		}
		if len(a) == 1 {
			for n := range set {
				names = append(names, n)
			}
			sort.Strings(names)
		}
		if len(names) == 0 {
			return replyArray(replyBulkString(kind), replyNull, replyInt(c.subCount()))
		}
		var out []byte
		for _, n := range names {
			if _, ok := set[n]; ok {
				delete(set, n)
				c.viewDirty = true
			}
			out = appendPush(out, kind, n, c.subCount())
		}
		// Fewer subscriptions only close watches, unless they leave the
		// shared watch of maxFeedWatches; should the narrower ones fail to
		// open, the wider watch stays and delivers what they would.
		if err := c.syncFeed(); err != nil {
			c.s.log.Warn("RESP keyspace notification watch", "remote", c.remote(), "err", err)
		}
		return out
	}
}

// runPublish refuses PUBLISH: cairn's only messages are its keyspace
// notifications, so there is no broker to publish to.
func runPublish(_ context.Context, _ *conn, _ [][]byte) []byte {
	return replyErr("ERR PUBLISH is not supported: cairn publishes only keyspace notifications (SUBSCRIBE __keyspace@0__:<key> or __keyevent@0__:<event>), it is not a pub/sub broker")
}

// subscribedPing is PING in subscribed mode: ["pong", message].
func subscribedPing(a [][]byte) []byte {
	switch len(a) {
	case 1:
		return replyArray(replyBulkString("pong"), replyBulkString(""))
	case 2:
		return replyArray(replyBulkString("pong"), replyBulk(a[1]))
	}
	return replyWrongArgs("ping")
}

// appendPush appends a subscription confirmation: [kind name count].
func appendPush(out []byte, kind, name string, count int64) []byte {
	out = append(out, "*3\r\n"...)
	out = appendBulk(out, kind)
	out = appendBulk(out, name)
	return append(out, replyInt(count)...)
}

func appendBulk(out []byte, s string) []byte {
	out = append(out, '$')
	out = append(out, itoa(int64(len(s)))...)
	out = append(out, "\r\n"...)
	out = append(out, s...)
	return append(out, "\r\n"...)
}

// unsubscribeAll leaves subscribed mode (RESET).
func (c *conn) unsubscribeAll() {
	if !c.subscribed() {
		return
	}
	c.channels, c.patterns = nil, nil
	c.viewDirty = true
	c.stopFeed()
}

// subView is the subscriptions the watch goroutines deliver to: a copy
// installed under c.wmu once the confirmations before it are written, so
// no message for a channel precedes its confirmation.
type subView struct {
	channels map[string]struct{}
	patterns []string
}

// installView copies the subscriptions for the watch goroutines, then
// delivers what they held since the subscription changed; c.wmu is held.
func (c *conn) installView() {
	c.viewDirty = false
	defer func() {
		held, fatal := c.held, c.heldFatal
		c.hold, c.held, c.heldFatal = false, nil, nil
		if len(held) > 0 {
			_ = c.deliverLocked(held)
		}
		if fatal != nil {
			c.writeFatalLocked(fatal)
		}
	}()
	if !c.subscribed() {
		c.view = nil
		return
	}
	v := &subView{channels: make(map[string]struct{}, len(c.channels))}
	for ch := range c.channels {
		v.channels[ch] = struct{}{}
	}
	for p := range c.patterns {
		v.patterns = append(v.patterns, p)
	}
	sort.Strings(v.patterns)
	c.view = v
}

// appendMessages appends the message and pmessage frames of channel ch.
func (v *subView) appendMessages(out []byte, ch, payload string) []byte {
	if _, ok := v.channels[ch]; ok {
		out = append(out, "*3\r\n$7\r\nmessage\r\n"...)
		out = appendBulk(out, ch)
		out = appendBulk(out, payload)
	}
	for _, p := range v.patterns {
		if globMatch(p, ch) {
			out = append(out, "*4\r\n$8\r\npmessage\r\n"...)
			out = appendBulk(out, p)
			out = appendBulk(out, ch)
			out = appendBulk(out, payload)
		}
	}
	return out
}

// feedWatch is one running watch of a connection's feed.
type feedWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// watchPrefixes is the smallest set of key prefixes whose changes cover
// every notification the subscriptions can match, sorted.
func (c *conn) watchPrefixes() []string {
	var ps []string
	all := false
	for ch := range c.channels {
		if p, ok := channelPrefix(ch); ok {
			ps = append(ps, p)
			all = all || p == ""
		}
	}
	for pat := range c.patterns {
		if p, ok := patternPrefix(pat); ok {
			ps = append(ps, p)
			all = all || p == ""
		}
	}
	if all {
		return []string{""}
	}
	sort.Strings(ps)
	out := ps[:0]
	for _, p := range ps {
		// Sorted, a prefix comes right before the strings it covers.
		if len(out) > 0 && strings.HasPrefix(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	if len(out) > maxFeedWatches {
		return []string{commonPrefix(out)}
	}
	return out
}

// channelPrefix is the key prefix channel ch needs a watch of: the key of
// a keyspace channel, every key for the channel of an event cairn sends.
func channelPrefix(ch string) (string, bool) {
	if key, ok := strings.CutPrefix(ch, keyspaceChannel); ok {
		return key, watchable(key)
	}
	if ev, ok := strings.CutPrefix(ch, keyeventChannel); ok {
		return "", ev == eventSet || ev == eventDel || ev == eventExpired
	}
	return "", false
}

// patternPrefix is the key prefix a pattern needs a watch of: the literal
// start of a pattern over keyspace channels, every key for a pattern that
// matches an event channel or could match a keyspace channel of any key.
func patternPrefix(pat string) (string, bool) {
	if globMatch(pat, keyeventChannel+eventSet) || globMatch(pat, keyeventChannel+eventDel) || globMatch(pat, keyeventChannel+eventExpired) {
		return "", true
	}
	lit := globLiteral(pat)
	if key, ok := strings.CutPrefix(lit, keyspaceChannel); ok {
		return key, watchable(key)
	}
	if strings.HasPrefix(keyspaceChannel, lit) {
		return "", true
	}
	return "", false
}

// watchable reports whether some key can start with prefix.
func watchable(prefix string) bool {
	return len(prefix) <= kv.MaxKeyBytes && strings.IndexByte(prefix, 0) < 0
}

// globLiteral is the literal start of a glob pattern, escapes resolved:
// every string the pattern matches starts with it.
func globLiteral(pattern string) string {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		switch ch := pattern[i]; ch {
		case '*', '?', '[':
			return b.String()
		case '\\':
			if i+1 < len(pattern) {
				i++
				b.WriteByte(pattern[i])
			} else {
				b.WriteByte(ch)
			}
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

func commonPrefix(ps []string) string {
	p := ps[0]
	for _, q := range ps[1:] {
		n := 0
		for n < len(p) && n < len(q) && p[n] == q[n] {
			n++
		}
		p = p[:n]
	}
	return p
}

// syncFeed makes the running watches match the subscriptions: it opens the
// watches of new prefixes (before closing the ones they replace, so no
// change is missed; one may be delivered twice meanwhile) and closes those
// no longer needed. When a watch cannot be opened nothing changes and the
// service's error is returned.
func (c *conn) syncFeed() error {
	want := c.watchPrefixes()
	opened := map[string]*feedWatch{}
	for _, p := range want {
		if c.watches[p] != nil {
			continue
		}
		w, err := c.openWatch(p)
		if err != nil {
			for _, o := range opened {
				o.stop()
			}
			if p == "" && errors.Is(err, kv.ErrUnsupportedMode) {
				return fmt.Errorf("%w; subscribe to the keys of one keyspace's prefix instead (__keyspace@0__:<prefix>*)", err)
			}
			return err
		}
		opened[p] = w
	}
	keep := map[string]bool{}
	for _, p := range want {
		keep[p] = true
	}
	for p, w := range c.watches {
		if !keep[p] {
			w.stop()
			delete(c.watches, p)
		}
	}
	if c.watches == nil && len(opened) > 0 {
		c.watches = map[string]*feedWatch{}
	}
	for p, w := range opened {
		c.watches[p] = w
	}
	return nil
}

// stopFeed closes every watch and waits for their goroutines.
func (c *conn) stopFeed() {
	for p, w := range c.watches {
		w.stop()
		delete(c.watches, p)
	}
}

func (w *feedWatch) stop() {
	w.cancel()
	<-w.done
}

// openWatch starts a watch of prefix under the connection's identity; the
// service has subscribed it to the engine's changes when it returns.
func (c *conn) openWatch(prefix string) (*feedWatch, error) {
	ctx, cancel := context.WithCancel(c.ctx)
	seq, err := c.s.svc.Watch(ctx, prefix, 0)
	if err != nil {
		cancel()
		return nil, err
	}
	w := &feedWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer c.s.metrics.watchOpened()()
		c.pump(ctx, prefix, seq)
	}()
	return w, nil
}

// pump delivers a watch's events until ctx ends or the watch fails for
// good; a strong watch the service dropped resumes after the last revision
// it delivered.
func (c *conn) pump(ctx context.Context, prefix string, seq iter.Seq2[[]kv.Event, error]) {
	var last int64
	for {
		progressed := false
		var werr error
		for evs, err := range seq {
			if err != nil {
				werr = err
				break
			}
			if len(evs) == 0 {
				continue
			}
			if err := c.deliver(evs); err != nil {
				c.s.log.Debug("RESP keyspace notification write failed", "remote", c.remote(), "err", err)
				c.closeNet()
				return
			}
			if r := evs[len(evs)-1].Revision; r > 0 {
				last, progressed = r, true
			}
		}
		if ctx.Err() != nil {
			return
		}
		if werr == nil {
			werr = errors.New("the watch ended")
		}
		if last > 0 && progressed {
			next, err := c.s.svc.Watch(ctx, prefix, last+1)
			if err == nil {
				c.s.log.Debug("RESP keyspace notification watch resumed", "remote", c.remote(), "prefix", prefix, "from", last+1, "after", werr)
				seq = next
				continue
			}
			werr = err
		}
		if ctx.Err() != nil {
			return
		}
		c.s.log.Info("RESP keyspace notifications stopped; closing the connection", "remote", c.remote(), "prefix", prefix, "err", werr)
		c.pushFatal(werr)
		return
	}
}

// deliver writes the messages of evs that the subscriptions and the
// notify-keyspace-events setting at this moment ask for.
func (c *conn) deliver(evs []kv.Event) error {
	flags := notifyFlags(c.s.notify.Load())
	if flags&(notifyKeyspace|notifyKeyevent) == 0 || flags&notifyAll == 0 {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.hold {
		if len(c.held)+len(evs) > maxHeldEvents {
			return errHeldTooMany
		}
		c.held = append(c.held, evs...)
		return nil
	}
	return c.deliverLocked(evs)
}

// maxHeldEvents bounds the events held while a subscription's confirmation
// is written (a moment, unless the client stops reading).
const maxHeldEvents = 1 << 16

var errHeldTooMany = errors.New("too many changes while the subscription was being confirmed")

// deliverLocked writes the messages of evs under the installed view; c.wmu
// is held.
func (c *conn) deliverLocked(evs []kv.Event) error {
	flags := notifyFlags(c.s.notify.Load())
	if flags&(notifyKeyspace|notifyKeyevent) == 0 || flags&notifyAll == 0 {
		return nil
	}
	v := c.view
	if v == nil {
		return nil
	}
	var out []byte
	for _, ev := range evs {
		name, class := eventSet, notifyString
		switch {
		case ev.Type == kv.EventDelete && ev.Expired:
			name, class = eventExpired, notifyExpired
		case ev.Type == kv.EventDelete:
			name, class = eventDel, notifyGeneric
		}
		if flags&class == 0 {
			continue
		}
		if flags&notifyKeyspace != 0 {
			out = v.appendMessages(out, keyspaceChannel+ev.Key, name)
		}
		if flags&notifyKeyevent != 0 {
			out = v.appendMessages(out, keyeventChannel+name, ev.Key)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return c.writePushLocked(out)
}

// writePushLocked writes b at once (c.wmu is held): the connection's
// goroutine may be waiting for input and would not flush it.
func (c *conn) writePushLocked(b []byte) error {
	if c.nc != nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(pushWriteTimeout))
	}
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	if f, ok := c.w.(interface{ flush() error }); ok {
		return f.flush()
	}
	return nil
}

// pushFatal tells the client why its notifications stopped and closes the
// connection.
func (c *conn) pushFatal(err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.hold {
		// After the confirmation being written and the events held.
		c.heldFatal = err
		return
	}
	c.writeFatalLocked(err)
}

// writeFatalLocked writes why the notifications stopped and closes the
// connection; c.wmu is held.
func (c *conn) writeFatalLocked(err error) {
	_ = c.writePushLocked(replyErr("ERR keyspace notifications stopped, subscribe again: " + trimKV(err)))
	c.closeNet()
}

func (c *conn) closeNet() {
	if c.nc != nil {
		c.nc.Close()
	}
}
