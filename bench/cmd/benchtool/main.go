// Command benchtool holds the Go helpers of the benchmarks in bench/ (see
// bench/README.md): a test backend for the proxy comparisons, an open-loop
// Poisson driver for the scheduling runs and the offline ideal schedule of
// the same arrival sequence, closed-loop and constant-rate drivers, and the
// argon2id hash cost. It uses only the standard library and
// golang.org/x/crypto, so it builds in seconds, and it never reads the
// database: the bench scripts start and wire everything.
//
// Every driver writes one JSON object (see Summary) to stdout.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// commands maps a subcommand to its entry point; each parses its own flags.
var commands = map[string]func(ctx context.Context, args []string) error{
	"backend": runBackend,
	"load":    runLoad,
	"offline": runOffline,
	"closed":  runClosed,
	"rate":    runRate,
	"argon2":  runArgon2,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: benchtool backend|load|offline|closed|rate|argon2 [flags] (-h for each)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := commands[os.Args[1]](ctx, os.Args[2:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchtool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
