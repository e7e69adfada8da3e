package account

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
)

// ReferralReward is the reward_rules row paid to the referrer when a
// referred user verifies (legacy reward `referral_verify`).
const ReferralReward = "referral_verify"

// referralMemo is the legacy transactions.memo of the referral reward.
const referralMemo = "rewards_referral_verify"

// MaxPageSize bounds list pages.
const MaxPageSize = 100

// Referral is one user the caller referred.
type Referral struct {
	UserID    int64
	Verified  bool
	CreatedAt time.Time
}

// Referrals is the caller's referral summary.
type Referrals struct {
	// Users is one page of referred users, newest first.
	Users []Referral
	// Total is the number of referred users.
	Total int64
	// CreditsEarned is the sum of the referral rewards paid.
	CreditsEarned int64
}

// ReferralToken returns the user's referral token, creating it (96 hex
// characters) the first time.
func (s *Service) ReferralToken(ctx context.Context, userID int64) (string, error) {
	tok, err := readReferralToken(ctx, s.pool, userID)
	if err != nil {
		return "", err
	}
	if tok != nil && *tok != "" {
		return *tok, nil
	}
	fresh, err := randomHex(KeyHexLen / 2)
	if err != nil {
		return "", err
	}
	return setReferralTokenOnce(ctx, s.pool, userID, fresh)
}

// Referrals returns the users userID referred (page is 1-based) and the
// credits earned from them.
func (s *Service) Referrals(ctx context.Context, userID int64, page, limit int) (Referrals, error) {
	limit = min(max(limit, 1), MaxPageSize)
	page = min(max(page, 1), 1_000_000)
	users, err := listReferred(ctx, s.pool, userID, limit, int64(page-1)*int64(limit))
	if err != nil {
		return Referrals{}, err
	}
	out := Referrals{Users: users}
	out.Total, out.CreditsEarned, err = sumReferrals(ctx, s.pool, userID)
	if err != nil {
		return Referrals{}, err
	}
	return out, nil
}

// addReferral records that token's owner referred the new user. An unusable
// or unknown token is logged and ignored (legacy C2).
func (s *Service) addReferral(ctx context.Context, tx pgx.Tx, userID int64, token string, now time.Time) error {
	if token == "" {
		return nil
	}
	if !usableToken(token) {
		s.log.Info("referral token ignored", zap.Int64("user_id", userID), zap.String("reason", "malformed"))
		return nil
	}
	referrer, ok, err := findUserByReferralToken(ctx, tx, token)
	if err != nil {
		return err
	}
	if !ok {
		s.log.Info("referral token ignored", zap.Int64("user_id", userID), zap.String("reason", "unknown"))
		return nil
	}
	return insertReferral(ctx, tx, referrer, userID, now)
}

// payReferralReward pays the referral_verify reward for referred user id,
// if they were referred, the rule exists and it was not paid before, and
// marks metadata.rewards_referral_verify on the referred user as the legacy
// system did. A missing rule is logged, never an error (legacy C3).
func (s *Service) payReferralReward(ctx context.Context, tx pgx.Tx, id int64, now time.Time) error {
	referrer, ok, err := findReferrer(ctx, tx, id)
	if err != nil || !ok {
		return err
	}
	amount, days, ok, err := findRewardRule(ctx, tx, ReferralReward)
	if err != nil {
		return err
	}
	if !ok {
		s.log.Warn("referral reward rule missing or disabled", zap.String("reward", ReferralReward), zap.Int64("user_id", id))
		return nil
	}
	payout, ok, err := insertPayout(ctx, tx, ReferralReward, id, referrer, amount, now)
	if err != nil || !ok {
		return err // !ok: paid before
	}
	if amount > 0 {
		in := credits.GrantInput{
			UserID: referrer, Amount: amount, Memo: referralMemo,
			IdempotencyKey: fmt.Sprintf("%s:%d", ReferralReward, id),
		}
		if days != nil {
			t := now.Add(time.Duration(*days) * 24 * time.Hour)
			in.ExpiresAt = &t
		}
		g, err := s.ledger.Grant(ctx, tx, in)
		if err != nil {
			return fmt.Errorf("grant referral reward: %w", err)
		}
		if err := linkPayout(ctx, tx, payout, g.ID); err != nil {
			return err
		}
	}
	if err := markRewarded(ctx, tx, id); err != nil {
		return err
	}
	s.log.Info("referral reward paid", zap.Int64("user_id", id), zap.Int64("referrer_id", referrer), zap.Int64("amount", amount))
	return nil
}

// insertReferral records that referrer referred userID.
func insertReferral(ctx context.Context, q db.Querier, referrer, userID int64, now time.Time) error {
	const sql = `INSERT INTO referrals (referrer_id, referred_id, metadata, created_at, updated_at) VALUES ($1, $2, '{}', $3, $3)`
	if _, err := q.Exec(ctx, sql, referrer, userID, now); err != nil {
		return fmt.Errorf("insert referral of user %d by %d: %w", userID, referrer, err)
	}
	return nil
}

// findReferrer returns who referred user id; ok is false when nobody did.
func findReferrer(ctx context.Context, q db.Querier, id int64) (referrer int64, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT referrer_id FROM referrals WHERE referred_id = $1 ORDER BY id LIMIT 1`, id).Scan(&referrer)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read referral of user %d: %w", id, err)
	}
	return referrer, true, nil
}

// findRewardRule reads the enabled reward rule name; ok is false when it
// is missing or disabled. days is nil for credits that never expire.
func findRewardRule(ctx context.Context, q db.Querier, name string) (amount int64, days *int, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT amount, expires_in_days FROM reward_rules WHERE name = $1 AND enabled`, name).
		Scan(&amount, &days)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("read reward rule: %w", err)
	}
	return amount, days, true, nil
}

// insertPayout records the payout of reward for referred; ok is false when
// it was recorded before (reward_payouts_once).
func insertPayout(ctx context.Context, q db.Querier, reward string, referred, referrer, amount int64, now time.Time) (id int64, ok bool, err error) {
	const sql = `
INSERT INTO reward_payouts (reward_name, referred_id, referrer_id, amount, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT ON CONSTRAINT reward_payouts_once DO NOTHING
RETURNING id`
	err = q.QueryRow(ctx, sql, reward, referred, referrer, amount, now).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("record referral payout for user %d: %w", referred, err)
	}
	return id, true, nil
}

// linkPayout records the ledger transaction that paid the payout.
func linkPayout(ctx context.Context, q db.Querier, payout, transaction int64) error {
	if _, err := q.Exec(ctx, `UPDATE reward_payouts SET transaction_id = $2 WHERE id = $1`, payout, transaction); err != nil {
		return fmt.Errorf("link referral payout: %w", err)
	}
	return nil
}

// listReferred returns one page of the users referrer referred, newest
// first.
func listReferred(ctx context.Context, q db.Querier, referrer int64, limit int, offset int64) ([]Referral, error) {
	const sql = `
SELECT u.id, u.is_verified, u.created_at
FROM referrals r JOIN users u ON u.id = r.referred_id
WHERE r.referrer_id = $1
ORDER BY r.id DESC LIMIT $2 OFFSET $3`
	rows, err := q.Query(ctx, sql, referrer, limit, offset)
	if err != nil {
		return nil, fmt.Errorf("list referrals of user %d: %w", referrer, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Referral, error) {
		var x Referral
		err := r.Scan(&x.UserID, &x.Verified, &x.CreatedAt)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("list referrals of user %d: %w", referrer, err)
	}
	return out, nil
}

// sumReferrals counts the users referrer referred and sums the rewards
// paid for them.
func sumReferrals(ctx context.Context, q db.Querier, referrer int64) (total, earned int64, err error) {
	const sql = `
SELECT (SELECT count(*) FROM referrals WHERE referrer_id = $1),
       (SELECT COALESCE(sum(amount), 0) FROM reward_payouts WHERE referrer_id = $1)`
	if err := q.QueryRow(ctx, sql, referrer).Scan(&total, &earned); err != nil {
		return 0, 0, fmt.Errorf("sum referrals of user %d: %w", referrer, err)
	}
	return total, earned, nil
}
