// Command cairn is the cairn server and client in one binary.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/internal/cli"
	"github.com/cairnkv/cairn/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		Start: func(ctx context.Context, cfg config.Config) (cli.Server, error) {
			return server.Start(ctx, cfg)
		},
		Removed:          server.ErrRemoved,
		Version:          server.Version,
		StdoutIsTerminal: term.IsTerminal(int(os.Stdout.Fd())),
	})
	stop()
	os.Exit(code)
}
