package respapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cairnkv/cairn/kv"
)

func adminCommands() []*command {
	const admin = flagNoMulti | flagAdmin
	return []*command{
		{name: "info", arity: -1, flags: flagNoMulti | flagRead, run: runInfo},
		{name: "raft", arity: -2, flags: admin, run: runRaft},
		{name: "machine", arity: 1, flags: admin | flagNoState, run: runMachine},
		{name: "version", arity: 1, flags: flagNoMulti | flagNoState, run: runVersion},
	}
}

func runVersion(_ context.Context, c *conn, _ [][]byte) []byte {
	return replyBulkString(c.s.opt.Version)
}

// runInfo is INFO [section ...] with the server, clients, replication and
// keyspace sections.
func runInfo(ctx context.Context, c *conn, a [][]byte) []byte {
	all := len(a) == 1
	want := map[string]bool{}
	for _, s := range a[1:] {
		switch sec := lower(s); sec {
		case "all", "default", "everything":
			all = true
		default:
			want[sec] = true
		}
	}
	show := func(sec string) bool { return all || want[sec] }
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ":" + oneLine(v) + "\r\n") }
	section := func(title string) {
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + title + "\r\n")
	}
	var st *kv.Status
	if show("server") || show("replication") {
		var errReply []byte
		if st, errReply = c.statusOf(ctx); errReply != nil {
			return errReply
		}
	}
	if show("server") {
		up := int64(time.Since(c.s.started).Seconds())
		section("Server")
		line("redis_version", redisVersion)
		line("cairn_version", c.s.opt.Version)
		line("redis_mode", "standalone")
		line("os", runtime.GOOS+" "+runtime.GOARCH)
		line("arch_bits", strconv.Itoa(strconv.IntSize))
		line("process_id", strconv.Itoa(os.Getpid()))
		line("run_id", st.Name)
		line("tcp_port", portOf(c.local()))
		line("uptime_in_seconds", itoa(up))
		line("uptime_in_days", itoa(up/86400))
	}
	if show("clients") {
		section("Clients")
		line("connected_clients", strconv.Itoa(c.s.connCount()))
	}
	if show("replication") {
		section("Replication")
		if st.State == "leader" {
			line("role", "master")
			line("connected_slaves", strconv.Itoa(max(st.Members-1, 0)))
		} else {
			line("role", "slave")
			host, port := c.leaderRESP(ctx, st.Leader)
			line("master_host", host)
			line("master_port", port)
			link := "down"
			if st.Leader != "" && c.s.svc.Ready() == nil {
				link = "up"
			}
			line("master_link_status", link)
			line("master_last_io_seconds_ago", itoa(st.LastContactMs/1000))
		}
		line("raft_state", st.State)
		line("raft_leader", st.Leader)
		line("raft_term", strconv.FormatUint(st.Term, 10))
		line("raft_commit_index", strconv.FormatUint(st.CommitIndex, 10))
		line("raft_applied_index", strconv.FormatUint(st.AppliedIndex, 10))
		line("raft_members", strconv.Itoa(st.Members))
		line("revision", itoa(st.Revision))
	}
	if show("keyspace") {
		keys, expires, err := c.countKeys(ctx)
		if err != nil {
			return replyError(err, false)
		}
		section("Keyspace")
		if keys > 0 {
			line("db0", "keys="+itoa(keys)+",expires="+itoa(expires)+",avg_ttl=0")
		}
	}
	if b.Len() > 0 {
		b.WriteString("\r\n")
	}
	return replyBulkString(b.String())
}

// countKeys counts the live keys and those with a TTL, from the local replica.
func (c *conn) countKeys(ctx context.Context) (keys, expires int64, err error) {
	after := ""
	for {
		res, err := c.s.svc.List(ctx, "", kv.ListOptions{ReadOptions: kv.ReadOptions{Serializable: true},
			After: after, Limit: listPage, KeysOnly: true})
		if err != nil {
			return 0, 0, err
		}
		for _, r := range res.Items {
			if live(r) != nil {
				keys++
				if r.Expires != 0 {
					expires++
				}
			}
		}
		if !res.More || len(res.Items) == 0 {
			return keys, expires, nil
		}
		after = res.Items[len(res.Items)-1].Key
	}
}

// leaderRESP is the host and port of the leader's RESP address.
func (c *conn) leaderRESP(ctx context.Context, leader string) (host, port string) {
	if leader == "" {
		return "", ""
	}
	ms, err := c.s.svc.Members(ctx)
	if err != nil {
		return "", ""
	}
	for _, m := range ms {
		if m.Name == leader {
			h, p, err := net.SplitHostPort(m.RESPAddr)
			if err != nil {
				return m.RESPAddr, ""
			}
			return h, p
		}
	}
	return "", ""
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "0"
	}
	return p
}

// runRaft is the uhaha-style cluster administration: RAFT LEADER, RAFT INFO
// [pattern], RAFT SERVER LIST|ADD|REMOVE, RAFT SNAPSHOT NOW|LIST|FILE|READ.
// The snapshots RAFT SNAPSHOT LIST, FILE and READ show are the node's
// scheduled backups (--backup-target), whole-cluster snapshot files that
// cairn snapshot restore reads; RAFT SNAPSHOT NOW compacts this node's Raft
// log, as uhaha's does.
func runRaft(ctx context.Context, c *conn, a [][]byte) []byte {
	sub := lower(a[1])
	if sub == "server" || sub == "snapshot" {
		if len(a) < 3 {
			return replyWrongArgs("raft|" + sub)
		}
		sub += " " + lower(a[2])
	}
	arity := map[string][2]int{ // allowed argument counts, the name included
		"leader": {2, 2}, "info": {2, 3},
		"server list": {3, 3}, "server add": {5, 7}, "server remove": {4, 4},
		"snapshot now": {3, 3}, "snapshot list": {3, 3}, "snapshot file": {4, 4}, "snapshot read": {4, 7},
	}
	n, ok := arity[sub]
	if !ok {
		return replyErr("ERR unknown subcommand '" + oneLine(sub) + "'. Try RAFT LEADER, INFO, SERVER LIST|ADD|REMOVE or SNAPSHOT NOW|LIST|FILE|READ.")
	}
	if len(a) < n[0] || len(a) > n[1] {
		return replyWrongArgs("raft|" + strings.ReplaceAll(sub, " ", "|"))
	}
	switch sub {
	case "leader":
		st, errReply := c.statusOf(ctx)
		if errReply != nil {
			return errReply
		}
		if st.Leader == "" {
			return replyErr("TRYAGAIN no leader")
		}
		host, port := c.leaderRESP(ctx, st.Leader)
		if host == "" && port == "" {
			return replyErr("ERR the leader " + st.Leader + " advertises no RESP address")
		}
		if port == "" {
			return replyBulkString(host)
		}
		return replyBulkString(net.JoinHostPort(host, port))
	case "info":
		return c.raftInfo(ctx, a)
	case "server list":
		ms, err := c.s.svc.Members(ctx)
		if err != nil {
			return replyError(err, false)
		}
		items := make([][]byte, len(ms))
		for i, m := range ms {
			items[i] = replyPairs("id", m.Name, "address", m.PeerAddr, "resp", m.RESPAddr,
				"client_url", m.ClientURL, "voter", strconv.FormatBool(m.Voter), "leader", strconv.FormatBool(m.Leader))
		}
		return replyArray(items...)
	case "server add":
		spec := kv.MemberSpec{Name: string(a[3]), PeerAddr: string(a[4])}
		if len(a) > 5 {
			spec.ClientURL = string(a[5])
		}
		if len(a) > 6 {
			spec.RESPAddr = string(a[6])
		}
		if err := c.s.svc.AddMember(ctx, spec); err != nil {
			return replyError(err, true)
		}
		return replyOK
	case "server remove":
		if err := c.s.svc.RemoveMember(ctx, string(a[3])); err != nil {
			return replyError(err, true)
		}
		return replyOK
	case "snapshot now":
		if err := c.s.svc.Snapshot(); err != nil {
			return replyError(err, false)
		}
		return replyOK
	case "snapshot list":
		files, errReply := c.snapshots()
		if errReply != nil {
			return errReply
		}
		items := make([][]byte, len(files))
		for i, f := range files {
			items[i] = replyPairs("id", f.ID, "time", f.Time.UTC().Format(time.RFC3339), "revision", strconv.FormatInt(f.Revision, 10),
				"bytes", strconv.FormatInt(f.Bytes, 10))
		}
		return replyArray(items...)
	case "snapshot file", "snapshot read":
		f, errReply := c.snapshot(string(a[3]))
		if errReply != nil {
			return errReply
		}
		if sub == "snapshot file" {
			return replyBulkString(f.Path)
		}
		return readSnapshot(f, a[4:])
	}
	return replyErr(msgSyntax)
}

// raftInfo is RAFT INFO [pattern]: this node's Raft state as flat key/value
// pairs, keeping the keys that match the pattern.
func (c *conn) raftInfo(ctx context.Context, a [][]byte) []byte {
	st, errReply := c.statusOf(ctx)
	if errReply != nil {
		return errReply
	}
	pattern := "*"
	if len(a) == 3 {
		pattern = string(a[2])
	}
	host, port := c.leaderRESP(ctx, st.Leader)
	leaderRESP := host
	if port != "" {
		leaderRESP = net.JoinHostPort(host, port)
	}
	all := []string{
		"id", st.Name,
		"state", st.State,
		"leader_id", st.Leader,
		"leader_peer_addr", st.LeaderAddr,
		"leader_resp_addr", leaderRESP,
		"term", strconv.FormatUint(st.Term, 10),
		"commit_index", strconv.FormatUint(st.CommitIndex, 10),
		"applied_index", strconv.FormatUint(st.AppliedIndex, 10),
		"last_index", strconv.FormatUint(st.LastIndex, 10),
		"revision", itoa(st.Revision),
		"num_members", strconv.Itoa(st.Members),
		"last_contact_ms", itoa(st.LastContactMs),
	}
	var out []string
	for i := 0; i < len(all); i += 2 {
		if globMatch(pattern, all[i]) {
			out = append(out, all[i], all[i+1])
		}
	}
	return replyPairs(out...)
}

// runMachine describes this node: name, Raft state, leader, revision,
// readiness, version and uptime.
func runMachine(ctx context.Context, c *conn, _ [][]byte) []byte {
	st, errReply := c.statusOf(ctx)
	if errReply != nil {
		return errReply
	}
	ready := "yes"
	if err := c.s.svc.Ready(); err != nil {
		ready = "no: " + trimKV(err)
	}
	return replyPairs(
		"name", st.Name,
		"state", st.State,
		"leader", st.Leader,
		"revision", itoa(st.Revision),
		"applied_index", strconv.FormatUint(st.AppliedIndex, 10),
		"ready", ready,
		"version", c.s.opt.Version,
		"uptime_seconds", itoa(int64(time.Since(c.s.started).Seconds())),
	)
}

func (c *conn) snapshots() ([]SnapshotFile, []byte) {
	if c.s.opt.Snapshots == nil {
		return nil, nil
	}
	files, err := c.s.opt.Snapshots.List()
	if err != nil {
		return nil, replyErr("ERR listing snapshots: " + oneLine(err.Error()))
	}
	return files, nil
}

func (c *conn) snapshot(id string) (SnapshotFile, []byte) {
	files, errReply := c.snapshots()
	if errReply != nil {
		return SnapshotFile{}, errReply
	}
	for _, f := range files {
		if f.ID == id {
			return f, nil
		}
	}
	return SnapshotFile{}, replyErr("ERR no snapshot " + oneLine(id) + " (RAFT SNAPSHOT LIST shows them)")
}

// maxSnapshotRead bounds one RAFT SNAPSHOT READ answer; larger files are
// read in ranges.
const maxSnapshotRead = 256 << 20

// readSnapshot answers RAFT SNAPSHOT READ id [RANGE start end]: the file's
// bytes from start up to end (exclusive), or all of it.
func readSnapshot(f SnapshotFile, rest [][]byte) []byte {
	start, end := int64(0), f.Bytes
	switch len(rest) {
	case 0:
	case 3:
		if lower(rest[0]) != "range" {
			return replyErr(msgSyntax)
		}
		var err1, err2 error
		start, err1 = strconv.ParseInt(string(rest[1]), 10, 64)
		end, err2 = strconv.ParseInt(string(rest[2]), 10, 64)
		if err1 != nil || err2 != nil || start < 0 || end < start {
			return replyErr("ERR RANGE start end: want 0 <= start <= end")
		}
		end = min(end, f.Bytes)
		start = min(start, end)
	default:
		return replyErr(msgSyntax)
	}
	if end-start > maxSnapshotRead {
		return replyErr(fmt.Sprintf("ERR the snapshot is %d bytes: read it in RANGEs of at most %d", f.Bytes, maxSnapshotRead))
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return replyErr("ERR " + oneLine(err.Error()))
	}
	defer fh.Close()
	b := make([]byte, end-start)
	if _, err := fh.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
		return replyErr("ERR " + oneLine(err.Error()))
	}
	return replyBulk(b)
}
