package credits

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/config"
)

// Config holds the ledger's settings. The zero value means: default prices,
// no signup bonus, DefaultRefundGrantTTL.
type Config struct {
	// Pricing is the price table (PRICE_* variables).
	Pricing Pricing
	// SignupBonusCredits is granted to every new account
	// (SIGNUP_BONUS_CREDITS); 0 disables the bonus. Default: 0 when
	// ENVIRONMENT is production, 50 in the local stack.
	SignupBonusCredits int64
	// SignupBonusDays is the bonus lifetime in days (SIGNUP_BONUS_DAYS,
	// default 30); 0 means the bonus never expires.
	SignupBonusDays int
	// RefundGrantDays is the lifetime in days of the replacement grant a
	// refund issues for credits whose grant has expired
	// (REFUND_GRANT_DAYS, default 30).
	RefundGrantDays int
}

// SignupBonusMemo is the memo (and idempotency key) of the signup bonus.
const SignupBonusMemo = "signup_bonus"

// Limits on Config.
const (
	MaxSignupBonus = 1_000_000
	MaxDays        = 3650
)

// LoadConfig reads the ledger's settings from l. environment is
// config.Common.Environment ("local" or "production"); it decides the
// signup bonus default.
func LoadConfig(l *config.Loader, environment string) Config {
	bonus := int64(50)
	if environment == "production" {
		bonus = 0
	}
	// The legacy default_credit_expiration (days; 30 in the old README)
	// was the expiry of credits granted without one; it stays the default
	// lifetime of the grants this ledger makes on its own.
	days := l.Int("DEFAULT_CREDIT_EXPIRATION", "default_credit_expiration", 30)
	return Config{
		Pricing:            LoadPricing(l),
		SignupBonusCredits: l.Int64("SIGNUP_BONUS_CREDITS", "", bonus),
		SignupBonusDays:    l.Int("SIGNUP_BONUS_DAYS", "", days),
		RefundGrantDays:    l.Int("REFUND_GRANT_DAYS", "", days),
	}
}

// Validate reports every bad setting, naming its variable.
func (c Config) Validate() error {
	var errs []error
	if err := c.Pricing.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SignupBonusCredits < 0 || c.SignupBonusCredits > MaxSignupBonus {
		errs = append(errs, fmt.Errorf("SIGNUP_BONUS_CREDITS: must be between 0 and %d", MaxSignupBonus))
	}
	if c.SignupBonusDays < 0 || c.SignupBonusDays > MaxDays {
		errs = append(errs, fmt.Errorf("SIGNUP_BONUS_DAYS: must be between 0 and %d", MaxDays))
	}
	if c.RefundGrantDays < 1 || c.RefundGrantDays > MaxDays {
		errs = append(errs, fmt.Errorf("REFUND_GRANT_DAYS: must be between 1 and %d", MaxDays))
	}
	return errors.Join(errs...)
}

// Options returns ledger Options for c with the given clock (nil means
// time.Now).
func (c Config) Options(now func() time.Time) Options {
	return Options{Now: now, Pricing: c.Pricing, RefundGrantTTL: time.Duration(c.RefundGrantDays) * 24 * time.Hour}
}

// SignupBonus returns the grant to make for a new account created at now,
// or ok false when the bonus is disabled. The grant carries the idempotency
// key "signup_bonus", so granting it twice gives it once. Call Ledger.Grant
// with it in the signup transaction.
func (c Config) SignupBonus(userID int64, now time.Time) (GrantInput, bool) {
	if c.SignupBonusCredits <= 0 {
		return GrantInput{}, false
	}
	in := GrantInput{UserID: userID, Amount: c.SignupBonusCredits, Memo: SignupBonusMemo, IdempotencyKey: SignupBonusMemo}
	if c.SignupBonusDays > 0 {
		t := now.UTC().Add(time.Duration(c.SignupBonusDays) * 24 * time.Hour)
		in.ExpiresAt = &t
	}
	return in, true
}

// ChargeInput describes a priced charge.
type ChargeInput struct {
	// UserID pays, unless Anonymous.
	UserID int64
	// Anonymous marks a caller without a token (auth.Claims.Anonymous).
	Anonymous bool
	// Op is the operation (an Op constant) and Units how many images,
	// requests or seconds it covers (see Pricing.Cost).
	Op    string
	Units int
	// IdempotencyKey makes the charge happen once (e.g. the job id).
	IdempotencyKey string
	// Metadata is an optional JSON object stored with the debit.
	Metadata json.RawMessage
	// HoldFor and HoldOwner make the debit a hold (see DebitInput).
	HoldFor   time.Duration
	HoldOwner string
}

// Charge prices the operation with the ledger's Pricing and debits it, with
// Op as the reason. Anonymous callers (no token: the legacy user 67,
// admitted only when config.Common AnonymousEnabled is set; whether they
// are admitted at all is the auth middleware's decision) and zero-priced
// operations are not charged: they are rate-limited instead, the result has
// Free set, ID 0, and nothing is written, so there is nothing to refund or
// settle. Errors are those of Debit.
func (l *Ledger) Charge(ctx context.Context, in ChargeInput) (Debit, error) {
	if _, ok := l.pricing.Price(in.Op); !ok {
		return Debit{}, apperr.Invalid(fmt.Sprintf("unknown operation %q", in.Op))
	}
	cost := l.pricing.Cost(in.Op, in.Units)
	if in.Anonymous || cost == 0 {
		return Debit{UserID: in.UserID, Reason: in.Op, IdempotencyKey: in.IdempotencyKey, Free: true}, nil
	}
	return l.Debit(ctx, DebitInput{UserID: in.UserID, Amount: cost, IdempotencyKey: in.IdempotencyKey,
		Reason: in.Op, Metadata: in.Metadata, HoldFor: in.HoldFor, HoldOwner: in.HoldOwner})
}
