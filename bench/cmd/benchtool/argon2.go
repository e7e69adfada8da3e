package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/crypto/argon2"
)

// runArgon2 measures the cost of one argon2id hash with accountsvc's
// parameters and library (golang.org/x/crypto/argon2), sequentially, so the
// login figures can be split into hash cost and service overhead.
func runArgon2(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("argon2", flag.ContinueOnError)
	mem := fs.Uint("m", 19456, "memory in KiB (ARGON2_MEMORY_KIB)")
	passes := fs.Uint("t", 2, "passes (ARGON2_TIME)")
	threads := fs.Uint("p", 1, "threads (ARGON2_THREADS)")
	n := fs.Int("n", 30, "hashes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *threads < 1 || *threads > 255 {
		return fmt.Errorf("-n must be positive and -p 1..255")
	}
	salt := []byte("0123456789abcdef")
	argon2.IDKey([]byte("warm-up"), salt, uint32(*passes), uint32(*mem), uint8(*threads), 32)
	results := make([]result, *n)
	start := time.Now()
	for i := range results {
		t := time.Now()
		argon2.IDKey([]byte("correct horse battery staple"), salt, uint32(*passes), uint32(*mem), uint8(*threads), 32)
		results[i] = result{status: 200, latency: time.Since(t)}
	}
	s := summarize(fmt.Sprintf("argon2id m=%d t=%d p=%d", *mem, *passes, *threads), results, time.Since(start))
	return writeJSON(os.Stdout, s)
}
