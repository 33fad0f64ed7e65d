package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCmd writes one man page per command (cairn.1, cairn-serve.1, …) into
// a directory, from the same command tree `cairn --help` shows.
func manCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "write cairn's man pages (section 1) into DIR",
		Long: "Writes one roff man page per command into DIR, created if missing: cairn.1, cairn-serve.1, cairn-members-remove.1, …\n" +
			"Install them with e.g. `sudo cairn man /usr/local/share/man/man1`; shell completions come from `cairn completion bash|zsh|fish|powershell`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			root.DisableAutoGenTag = true // pages that do not change with the day they were made
			header := &doc.GenManHeader{Title: "CAIRN", Section: "1", Source: "cairn", Manual: "cairn manual"}
			if err := doc.GenManTree(root, header, args[0]); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			return nil
		},
	}
}
