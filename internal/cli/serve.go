package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/config"
)

func serveCmd(env *Env) *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run a cairn node (with no flags: a single node on 127.0.0.1:7700, data in ./cairn-data)",
		Args:  cobra.NoArgs,
	}
	flags := config.RegisterFlags(cmd.Flags(), &cfg)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := config.Load(cmd.Flags(), &cfg, flags, env.Getenv); err != nil {
			return usageError{err}
		}
		if err := cfg.Validate(); err != nil {
			return usageError{err}
		}
		logger, err := cfg.NewLogger(env.Stderr)
		if err != nil {
			return usageError{err}
		}
		cfg.Logger = logger
		if env.Start == nil {
			return errors.New("serve: no server in this build")
		}
		ctx := cmd.Context()
		s, err := env.Start(ctx, cfg)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		var runErr error
		select {
		case <-ctx.Done():
		case runErr = <-s.Err():
		}
		logger.Info("shutting down")
		if err := closeWithin(s, shutdownBound); err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
			runErr = err
		}
		return runErr
	}
	return cmd
}

// shutdownBound is how long serve waits for the node to close. A node
// whose disk failed may never close (a database waits on writes that keep
// failing); serve then returns anyway, and the process exits: what is
// durable is all a restart relies on, as after a crash.
const shutdownBound = 30 * time.Second

func closeWithin(s Server, bound time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("serve: the node did not close within %s; exiting without it", bound)
	}
}
