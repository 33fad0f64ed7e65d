package cli

import (
	"context"
	"errors"
	"fmt"

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
		if err := s.Close(); err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
			runErr = err
		}
		return runErr
	}
	return cmd
}
