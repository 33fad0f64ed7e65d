package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// buildInfo is what `cairn version` reports: cairn's own version, and what
// the Go toolchain recorded in the binary when it was built.
type buildInfo struct {
	Version string `json:"version"`
	// Module is the main module's version as the build saw it: "(devel)"
	// for a build from a checkout, vX.Y.Z for `go install …@vX.Y.Z`.
	Module      string `json:"module_version,omitempty"`
	Revision    string `json:"vcs_revision,omitempty"`
	RevisionAt  string `json:"vcs_time,omitempty"`
	Modified    bool   `json:"vcs_modified"`
	GoVersion   string `json:"go_version"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	BuildPath   string `json:"path,omitempty"`
	RaceEnabled bool   `json:"race,omitempty"`
}

// readBuildInfo fills a buildInfo from runtime/debug.ReadBuildInfo (absent
// fields stay empty: a test binary, or a build without VCS stamping).
func readBuildInfo(version string, read func() (*debug.BuildInfo, bool)) buildInfo {
	b := buildInfo{Version: version, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	bi, ok := read()
	if !ok {
		return b
	}
	b.Module, b.BuildPath = bi.Main.Version, bi.Path
	if bi.GoVersion != "" {
		b.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.RevisionAt = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		case "-race":
			b.RaceEnabled = s.Value == "true"
		}
	}
	return b
}

func versionCmd(g *globals, env *Env) *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "print the version and build information (-o json for all of it)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b := readBuildInfo(env.Version, debug.ReadBuildInfo)
			if g.json() {
				return printJSON(env.Stdout, b)
			}
			fmt.Fprintln(env.Stdout, "cairn", b.Version)
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			if b.Module != "" {
				fmt.Fprintf(tw, "module\t%s\n", b.Module)
			}
			if b.Revision != "" {
				rev := b.Revision
				if b.Modified {
					rev += " (modified)"
				}
				fmt.Fprintf(tw, "revision\t%s\n", rev)
				fmt.Fprintf(tw, "revision time\t%s\n", dash(b.RevisionAt))
			}
			fmt.Fprintf(tw, "go\t%s\n", b.GoVersion)
			fmt.Fprintf(tw, "os/arch\t%s/%s\n", b.OS, b.Arch)
			return tw.Flush()
		},
	}
}
