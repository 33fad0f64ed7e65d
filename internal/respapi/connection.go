package respapi

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/kv"
)

// redisVersion is the Redis version whose behaviour this front end follows;
// clients read it from HELLO and INFO to decide which commands they may send.
const redisVersion = "7.2.0"

func connectionCommands() []*command {
	const state = flagNoMulti | flagNoState
	return []*command{
		{name: "ping", arity: -1, flags: flagNoState | flagPubSub, plan: planPing},
		{name: "echo", arity: 2, flags: flagNoState, plan: planEcho},
		{name: "auth", arity: -2, flags: flagNoAuth | state, run: runAuth},
		{name: "hello", arity: -1, flags: flagNoAuth | state, run: runHello},
		{name: "client", arity: -2, flags: state, run: runClient},
		{name: "select", arity: 2, flags: state, run: runSelect},
		{name: "quit", arity: -1, flags: flagNoAuth | flagMultiCtl | flagNoState | flagPubSub, run: runQuit},
		{name: "reset", arity: 1, flags: flagNoAuth | flagMultiCtl | flagNoMulti | flagPubSub, run: runReset},
		{name: "readonly", arity: 1, flags: state, run: runReadonly(true)},
		{name: "readwrite", arity: 1, flags: state, run: runReadonly(false)},
		{name: "command", arity: -1, flags: state, run: runCommand},
		{name: "config", arity: -2, flags: state | flagAdmin, run: runConfig},
	}
}

func planPing(_ *conn, a [][]byte) plan {
	switch len(a) {
	case 1:
		return planStatic(replyStatus("PONG"))
	case 2:
		return planStatic(replyBulk(a[1]))
	}
	return plan{err: replyWrongArgs("ping")}
}

func planEcho(_ *conn, a [][]byte) plan { return planStatic(replyBulk(a[1])) }

func runAuth(ctx context.Context, c *conn, a [][]byte) []byte {
	if len(a) > 3 {
		return replyErr(msgSyntax)
	}
	if c.s.opt.Auth == nil {
		return replyErr("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	}
	user, pass := "default", string(a[1])
	if len(a) == 3 {
		user, pass = string(a[1]), string(a[2])
	}
	return c.login(ctx, user, pass)
}

// login checks credentials and, when they are right, makes the user the
// connection's identity. Writes queued under the previous identity are sent
// first, under it.
func (c *conn) login(ctx context.Context, user, pass string) []byte {
	id, err := c.s.opt.Auth.Authenticate(user, pass)
	if err != nil {
		c.s.log.Info("RESP authentication failed", "remote", c.remote(), "user", user)
		return replyErr(msgWrongPass)
	}
	c.flushWrites(ctx)
	c.setIdentity(id)
	return replyOK
}

func (c *conn) remote() string {
	if c.nc == nil {
		return ""
	}
	return c.nc.RemoteAddr().String()
}

func (c *conn) local() string {
	if c.nc == nil {
		return ""
	}
	return c.nc.LocalAddr().String()
}

// runHello is HELLO [protover [AUTH user pass] [SETNAME name]]. Only RESP2 is
// spoken, so protover 3 is refused with NOPROTO (clients then fall back).
func runHello(ctx context.Context, c *conn, a [][]byte) []byte {
	var user, pass, name string
	var withAuth, withName bool
	if len(a) >= 2 {
		v, ok := parseInt(a[1])
		if !ok {
			return replyErr("ERR Protocol version is not an integer or out of range")
		}
		if v != 2 {
			return replyErr("NOPROTO unsupported protocol version")
		}
		for i := 2; i < len(a); i++ {
			switch lower(a[i]) {
			case "auth":
				if i+2 >= len(a) {
					return replyErr("ERR Syntax error in HELLO option 'auth'")
				}
				user, pass, withAuth = string(a[i+1]), string(a[i+2]), true
				i += 2
			case "setname":
				if i+1 >= len(a) {
					return replyErr("ERR Syntax error in HELLO option 'setname'")
				}
				name, withName = string(a[i+1]), true
				i++
			default:
				return replyErr("ERR Syntax error in HELLO option '" + string(a[i]) + "'")
			}
		}
	}
	if withAuth {
		switch {
		case user == "default" && !c.s.authRequired():
			// Without required authentication the "default" user takes
			// any password, as in a Redis without requirepass.
		case c.s.opt.Auth == nil:
			return replyErr(msgWrongPass)
		default:
			if r := c.login(ctx, user, pass); string(r) != string(replyOK) {
				return r
			}
		}
	}
	if !c.mayRun() {
		return replyErr("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
	}
	if withName {
		if !validClientName(name) {
			return replyErr(msgBadClientName)
		}
		c.name = name
	}
	return replyArray(
		replyBulkString("server"), replyBulkString("redis"),
		replyBulkString("version"), replyBulkString(redisVersion),
		replyBulkString("proto"), replyInt(2),
		replyBulkString("id"), replyInt(c.id),
		replyBulkString("mode"), replyBulkString("standalone"),
		replyBulkString("role"), replyBulkString(c.role(ctx)),
		replyBulkString("modules"), replyEmptyArray,
	)
}

// role is "master" on the Raft leader and "replica" elsewhere.
func (c *conn) role(ctx context.Context) string {
	if st, err := c.s.svc.Status(ctx); err == nil && st != nil && st.State == "leader" {
		return "master"
	}
	return "replica"
}

const msgBadClientName = "ERR Client names cannot contain spaces, newlines or special characters."

// validClientName is Redis's rule: printable ASCII without spaces.
func validClientName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

func runClient(_ context.Context, c *conn, a [][]byte) []byte {
	sub := lower(a[1])
	want := map[string]int{"id": 2, "getname": 2, "info": 2, "setname": 3, "setinfo": 4, "no-evict": 3, "no-touch": 3, "readmode": 3}
	n, ok := want[sub]
	if !ok {
		return replyErr("ERR unknown subcommand '" + string(a[1]) + "'. Try CLIENT HELP.")
	}
	if len(a) != n {
		return replyWrongArgs("client|" + sub)
	}
	switch sub {
	case "id":
		return replyInt(c.id)
	case "getname":
		if c.name == "" {
			return replyNull
		}
		return replyBulkString(c.name)
	case "setname":
		if !validClientName(string(a[2])) {
			return replyErr(msgBadClientName)
		}
		c.name = string(a[2])
	case "setinfo":
		v := string(a[3])
		if !validClientName(v) {
			return replyErr("ERR " + lower(a[2]) + " cannot contain spaces, newlines or special characters.")
		}
		switch lower(a[2]) {
		case "lib-name":
			c.lib = v
		case "lib-ver":
			c.libVer = v
		default:
			return replyErr("ERR Unrecognized option '" + string(a[2]) + "'")
		}
	case "info":
		return replyBulkString(c.info() + "\n")
	case "readmode":
		// cairn's own: CLIENT READMODE lease|read-index|default picks how
		// this connection's linearizable reads confirm the leader.
		m := lower(a[2])
		if m == "default" {
			m = ""
		}
		mode, err := kv.ParseReadMode(m)
		if err != nil {
			return replyErr("ERR CLIENT READMODE takes lease, read-index or default, not '" + string(a[2]) + "'")
		}
		c.readMode = mode
	case "no-evict", "no-touch":
		if !eqFold(a[2], "on") && !eqFold(a[2], "off") {
			return replyErr(msgSyntax)
		}
	}
	return replyOK
}

// info is this connection's line of CLIENT INFO.
func (c *conn) info() string {
	flags := "N"
	switch {
	case c.multi:
		flags = "x"
	case c.subscribed():
		flags = "P"
	}
	return "id=" + itoa(c.id) + " addr=" + c.remote() + " laddr=" + c.local() + " name=" + c.name +
		" db=0 flags=" + flags + " sub=" + itoa(int64(len(c.channels))) + " psub=" + itoa(int64(len(c.patterns))) +
		" multi=" + itoa(int64(len(c.queued))) + " watch=" + itoa(int64(len(c.watched))) +
		" user=" + c.user + " lib-name=" + c.lib + " lib-ver=" + c.libVer + " resp=2"
}

func runSelect(_ context.Context, _ *conn, a [][]byte) []byte {
	n, ok := parseInt(a[1])
	if !ok {
		return replyErr(msgNotInteger)
	}
	if n != 0 {
		return replyErr(msgDBOutOfRange)
	}
	return replyOK
}

func runQuit(_ context.Context, c *conn, _ [][]byte) []byte {
	c.quit = true
	return replyOK
}

// runReset is RESET: the connection as it was when it connected. MULTI is
// discarded, watched keys forgotten, subscriptions ended, reads
// linearizable again, the name cleared, and the identity back to the
// client certificate's or none (writes queued before are sent first, under
// the identity they were sent with).
func runReset(_ context.Context, c *conn, _ [][]byte) []byte {
	c.resetMulti()
	c.unsubscribeAll()
	c.readonly = false
	c.readMode = kv.ReadModeDefault
	c.name = ""
	if c.cert != nil {
		c.setIdentity(*c.cert)
	} else {
		c.authed, c.user = false, ""
		c.ctx = auth.WithIdentity(c.s.ctx, auth.Anonymous)
	}
	return replyStatus("RESET")
}

// runReadonly is READONLY (on: this connection's reads are served from the
// local replica, possibly stale) and READWRITE (back to linearizable reads).
func runReadonly(on bool) func(context.Context, *conn, [][]byte) []byte {
	return func(_ context.Context, c *conn, _ [][]byte) []byte {
		c.readonly = on
		return replyOK
	}
}

// runCommand is COMMAND, COMMAND COUNT|LIST|INFO|DOCS: enough for redis-cli
// and client libraries that look commands up.
func runCommand(_ context.Context, _ *conn, a [][]byte) []byte {
	if len(a) == 1 {
		items := make([][]byte, 0, len(commandNames))
		for _, n := range commandNames {
			items = append(items, commandInfo(commands[n]))
		}
		return replyArray(items...)
	}
	switch lower(a[1]) {
	case "count":
		return replyInt(int64(len(commandNames)))
	case "list":
		return replyStrings(commandNames)
	case "docs":
		return replyEmptyArray
	case "info":
		items := make([][]byte, 0, len(a)-2)
		for _, n := range a[2:] {
			if cmd := commands[lower(n)]; cmd != nil {
				items = append(items, commandInfo(cmd))
			} else {
				items = append(items, replyNullArray)
			}
		}
		return replyArray(items...)
	}
	return replyErr("ERR unknown subcommand '" + string(a[1]) + "'. Try COMMAND HELP.")
}

// commandInfo is one entry of COMMAND: name, arity, flags, first key, last
// key, step (the Redis 6 layout, which clients accept).
func commandInfo(cmd *command) []byte {
	var flags []string
	switch {
	case cmd.flags&flagWrite != 0:
		flags = append(flags, "write")
	case cmd.flags&flagRead != 0:
		flags = append(flags, "readonly")
	}
	if cmd.flags&flagAdmin != 0 {
		flags = append(flags, "admin")
	}
	if cmd.flags&flagNoAuth != 0 {
		flags = append(flags, "no_auth")
	}
	if cmd.flags&flagNoMulti != 0 {
		flags = append(flags, "no_multi")
	}
	fl := make([][]byte, len(flags))
	for i, f := range flags {
		fl[i] = replyStatus(f)
	}
	return replyArray(replyBulkString(cmd.name), replyInt(int64(cmd.arity)), replyArray(fl...),
		replyInt(int64(cmd.firstKey)), replyInt(int64(cmd.lastKey)), replyInt(int64(cmd.step)))
}

// configValues answers CONFIG GET for the parameters tools ask about
// (redis-benchmark reads save and appendonly); cairn's configuration lives in
// its own flags and file. notify-keyspace-events is the one parameter
// CONFIG SET changes (see configNotify).
var configValues = map[string]string{
	"save":        "",
	"appendonly":  "no",
	"databases":   "1",
	"maxmemory":   "0",
	"requirepass": "",
}

// configNotify is the parameter of the keyspace notification setting: per
// node, in memory, empty (off) at start, as in a Redis without it in its
// configuration file.
const configNotify = "notify-keyspace-events"

func runConfig(_ context.Context, c *conn, a [][]byte) []byte {
	switch lower(a[1]) {
	case "get":
		if len(a) < 3 {
			return replyWrongArgs("config|get")
		}
		values := map[string]string{configNotify: notifyFlags(c.s.notify.Load()).String()}
		for n, v := range configValues {
			values[n] = v
		}
		var names []string
		for n := range values {
			for _, p := range a[2:] {
				if globMatch(lower(p), n) {
					names = append(names, n)
					break
				}
			}
		}
		sort.Strings(names)
		var pairs []string
		for _, n := range names {
			v := values[n]
			if n == "requirepass" {
				v = "" // never reveal it
			}
			pairs = append(pairs, n, v)
		}
		return replyPairs(pairs...)
	case "set":
		return c.configSet(a)
	case "resetstat":
		return replyOK
	}
	return replyErr("ERR unknown subcommand '" + string(a[1]) + "'. Try CONFIG HELP.")
}

// configSet is CONFIG SET parameter value [parameter value …]: every
// parameter is checked before any changes, so a refused one changes
// nothing.
func (c *conn) configSet(a [][]byte) []byte {
	if len(a) < 4 || len(a)%2 != 0 {
		return replyWrongArgs("config|set")
	}
	var notify *notifyFlags
	for i := 2; i < len(a); i += 2 {
		name := lower(a[i])
		if name != configNotify {
			if _, ok := configValues[name]; ok {
				return replyErr("ERR CONFIG SET is not supported for '" + oneLine(name) + "': cairn is configured with its flags and config file; only notify-keyspace-events can be set")
			}
			return replyErr("ERR Unknown option or number of arguments for CONFIG SET - '" + oneLine(string(a[i])) + "'")
		}
		f, bad, ok := parseNotifyFlags(string(a[i+1]))
		if !ok {
			return replyErr(fmt.Sprintf(msgBadNotifyFlags, bad))
		}
		notify = &f
	}
	if notify != nil {
		c.s.notify.Store(uint32(*notify))
	}
	return replyOK
}

// statusOf fetches the node status for INFO, RAFT and MACHINE.
func (c *conn) statusOf(ctx context.Context) (*kv.Status, []byte) {
	st, err := c.s.svc.Status(ctx)
	if err != nil {
		return nil, replyError(err, false)
	}
	if st == nil {
		return nil, replyErr("ERR no status")
	}
	return st, nil
}

// oneLine keeps a value on one line of INFO output.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
