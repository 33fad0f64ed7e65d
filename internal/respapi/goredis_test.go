package respapi

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// go-redis with its default options asks for RESP3 with HELLO 3, falls back
// to RESP2 on NOPROTO, authenticates and sends CLIENT SETINFO.
func TestGoRedisDefaults(t *testing.T) {
	svc := newService(t, withPasswords(t, "default", "pw")...)
	srv := startServer(t, svc, Options{Auth: svc})
	ctx := context.Background()
	cl := redis.NewClient(&redis.Options{Addr: srv.addr, Password: "pw", ClientName: "tester", DialTimeout: 5 * time.Second})
	defer cl.Close()
	if err := cl.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := cl.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if name, err := cl.ClientGetName(ctx).Result(); err != nil || name != "tester" {
		t.Errorf("client name %q, %v", name, err)
	}
	if n, err := cl.DBSize(ctx).Result(); err != nil || n != 1 {
		t.Errorf("DBSIZE = %d, %v", n, err)
	}
	if _, err := cl.Command(ctx).Result(); err != nil {
		t.Errorf("COMMAND: %v", err)
	}
	bad := redis.NewClient(&redis.Options{Addr: srv.addr, Password: "wrong", MaxRetries: -1})
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil {
		t.Error("PING with a wrong password worked")
	}
}
