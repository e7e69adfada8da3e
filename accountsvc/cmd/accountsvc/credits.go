package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
)

// creditsUsage is appended to usage errors. --expires takes days ("30d") or
// a Go duration ("36h"); omitted or "never" means the credits never expire.
// Results are printed as JSON.
const creditsUsage = `usage:
  accountsvc credits grant --user ID --amount N [--expires 30d|36h|never] --memo TEXT [--key IDEMPOTENCY_KEY]
  accountsvc credits balance --user ID`

// runCredits is the `accountsvc credits` operator command: it grants
// credits or prints a balance, against cfg.DatabaseURL.
func runCredits(ctx context.Context, args []string, cfg app.Config, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("credits: missing command\n%s", creditsUsage)
	}
	fs := flag.NewFlagSet("credits "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	user := fs.Int64("user", 0, "user id")
	amount := fs.Int64("amount", 0, "credits to grant")
	expires := fs.String("expires", "", "lifetime: 30d, 36h or never")
	memo := fs.String("memo", "", "why the credits are granted")
	key := fs.String("key", "", "idempotency key: the same key grants once")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("credits %s: %w\n%s", args[0], err, creditsUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("credits %s: unexpected argument %q\n%s", args[0], fs.Arg(0), creditsUsage)
	}
	if *user <= 0 {
		return fmt.Errorf("credits %s: --user is required\n%s", args[0], creditsUsage)
	}

	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	ledger := credits.NewLedger(pool, cfg.Credits.Options(nil))

	switch args[0] {
	case "grant":
		lifetime, err := parseLifetime(*expires)
		if err != nil {
			return fmt.Errorf("credits grant: --expires: %w", err)
		}
		in := credits.GrantInput{UserID: *user, Amount: *amount, Memo: *memo, IdempotencyKey: *key}
		if lifetime > 0 {
			t := time.Now().UTC().Add(lifetime)
			in.ExpiresAt = &t
		}
		g, err := ledger.Grant(ctx, nil, in)
		if err != nil {
			return fmt.Errorf("credits grant: %w", err)
		}
		out := map[string]any{"id": g.ID, "user_id": g.UserID, "amount": g.Amount, "expires_at": g.ExpiresAt,
			"memo": g.Memo, "replayed": g.Replayed}
		return json.NewEncoder(stdout).Encode(out)
	case "balance":
		n, err := ledger.Balance(ctx, *user)
		if err != nil {
			return fmt.Errorf("credits balance: %w", err)
		}
		return json.NewEncoder(stdout).Encode(map[string]int64{"user_id": *user, "credits": n})
	default:
		return fmt.Errorf("unknown credits command %q\n%s", args[0], creditsUsage)
	}
}

// parseLifetime parses "30d", a Go duration, or ""/"never" (0: no expiry).
func parseLifetime(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "never" {
		return 0, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > credits.MaxDays {
			return 0, fmt.Errorf("%q: want 1d to %dd", s, credits.MaxDays)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: want e.g. 30d, 36h or never", s)
		}
	}
	if d <= 0 || d > credits.MaxDays*24*time.Hour {
		return 0, fmt.Errorf("%q: must be positive and at most %d days", s, credits.MaxDays)
	}
	return d, nil
}
