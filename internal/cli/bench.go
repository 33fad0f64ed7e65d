package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/internal/bench"
)

func benchCmd(g *globals, env *Env) *cobra.Command {
	var c bench.Config
	var endpoints string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "load generator: throughput and latency over HTTP or the Redis protocol (cairn or Redis itself)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if endpoints == "" {
				if c.Protocol == "resp" {
					endpoints = "127.0.0.1:7702"
				} else {
					s, err := g.resolveClient()
					if err != nil {
						return err
					}
					endpoints = strings.Join(s.Endpoints, ",")
				}
			}
			c.Endpoints = strings.Split(endpoints, ",")
			if err := c.Validate(); err != nil {
				return usageError{err}
			}
			var bar *progressbar.ProgressBar
			var progress func(int64)
			if !quiet {
				max := c.Total
				if max <= 0 {
					max = -1
				}
				bar = progressbar.NewOptions64(max, progressbar.OptionSetWriter(env.Stderr), progressbar.OptionSetDescription("bench"),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("ops"), progressbar.OptionThrottle(200*time.Millisecond),
					progressbar.OptionClearOnFinish())
				progress = func(done int64) { _ = bar.Set64(done) }
			}
			res, err := bench.Run(cmd.Context(), c, progress)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, res)
			}
			return printBench(env.Stdout, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Protocol, "protocol", "http", "http or resp")
	f.StringVar(&endpoints, "bench-endpoints", "", "targets (URLs for http, host:port for resp); default --endpoints, or 127.0.0.1:7702 for resp")
	f.IntVar(&c.Clients, "clients", 64, "concurrent clients")
	f.IntVar(&c.Conns, "conns", 0, "HTTP connections shared by the clients (0: one per client)")
	f.Int64Var(&c.Total, "total", 0, "stop after this many operations")
	f.DurationVar(&c.Duration, "duration", 0, "stop after this long (default 10s when --total is not given)")
	f.IntVar(&c.KeySize, "key-size", 8, "key length in bytes")
	f.IntVar(&c.ValSize, "val-size", 256, "value length in bytes")
	f.IntVar(&c.KeySpace, "key-space", 100000, "number of distinct keys")
	f.Float64Var(&c.ReadRatio, "read-ratio", 0, "fraction of reads (0..1)")
	f.StringVar(&c.Consistency, "consistency", "linearizable", "read consistency: linearizable or serializable")
	f.IntVar(&c.Pipeline, "pipeline", 1, "commands per round trip (resp)")
	f.Float64Var(&c.Rate, "rate", 0, "total operations per second (0: unlimited)")
	f.StringVar(&c.Password, "password", "", "AUTH password (resp)")
	f.StringVar(&c.KeyPrefix, "key-prefix", "bench/", "prefix of every key")
	f.BoolVar(&c.Sequential, "sequential", false, "write keys in order, each once per pass (to load a data set)")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	cmd.PreRun = func(cmd *cobra.Command, _ []string) {
		if c.Total <= 0 && c.Duration <= 0 {
			c.Duration = 10 * time.Second
		}
	}
	return cmd
}

// printBench writes the table form of a run: a header line, then one row
// per operation type and one for all of them, latencies in milliseconds.
func printBench(w io.Writer, res *bench.Result) error {
	fmt.Fprintf(w, "%s, %d clients, pipeline %d, %s\n", res.Protocol, res.Clients, res.Pipeline, res.Elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tops\terrors\tops/s\tp50\tp90\tp99\tp99.9\tmax\t")
	row := func(name string, s *bench.Stats) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", name, s.Ops, s.Errors, s.PerSec, ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max))
	}
	for _, name := range []string{"put", "get"} {
		if s, ok := res.ByOp[name]; ok {
			row(name, s)
		}
	}
	row("all", &res.All)
	if err := tw.Flush(); err != nil {
		return err
	}
	if res.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", res.FirstError)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
