package credits_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/credits"
)

func TestPricingCost(t *testing.T) {
	t.Parallel()
	var zero credits.Pricing // the zero value is the default table
	tests := []struct {
		op    string
		units int
		want  int64
	}{
		{credits.OpTxt2Img, 4, 4},
		{credits.OpImg2Img, 1, 1},
		{credits.OpInpaint, 2, 2},
		{credits.OpControlNet, 3, 6},
		{credits.OpUpscale, 1, 1},
		{credits.OpInterrogate, 1, 1},
		{credits.OpExtendPrompt, 1, 1},
		{credits.OpMask, 1, 1},
		{credits.OpAudio, 30, 30},
		{credits.OpVideo, 10, 20},
		{credits.OpTxt2Img, 0, 1},                     // at least one unit
		{credits.OpTxt2Img, -5, 1},                    // at least one unit
		{"unknown", 2, 4},                             // never free: the highest price
		{credits.OpVideo, math.MaxInt, math.MaxInt64}, // saturates
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, zero.Cost(tt.op, tt.units), "%s x %d", tt.op, tt.units)
		require.Equal(t, tt.want, credits.DefaultPricing().Cost(tt.op, tt.units), "%s x %d", tt.op, tt.units)
	}
	require.Len(t, zero.Table(), 10)
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	l := config.FromMap(map[string]string{"PRICE_TXT2IMG": "3", "PRICE_AUDIO_PER_SECOND": "0"})
	cfg := credits.LoadConfig(l, "local")
	require.NoError(t, l.Err())
	require.NoError(t, cfg.Validate())
	require.Equal(t, int64(9), cfg.Pricing.Cost(credits.OpTxt2Img, 3))
	require.Equal(t, int64(0), cfg.Pricing.Cost(credits.OpAudio, 30))
	require.Equal(t, int64(50), cfg.SignupBonusCredits, "local stack default")
	require.Equal(t, 30, cfg.SignupBonusDays)

	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	in, ok := cfg.SignupBonus(7, now)
	require.True(t, ok)
	require.Equal(t, int64(50), in.Amount)
	require.Equal(t, now.Add(30*24*time.Hour), *in.ExpiresAt)
	require.Equal(t, "signup_bonus", in.IdempotencyKey)

	prod := credits.LoadConfig(config.FromMap(nil), "production")
	require.Zero(t, prod.SignupBonusCredits, "production default")
	_, ok = prod.SignupBonus(7, now)
	require.False(t, ok)

	forever := credits.LoadConfig(config.FromMap(map[string]string{"SIGNUP_BONUS_DAYS": "0"}), "local")
	in, ok = forever.SignupBonus(7, now)
	require.True(t, ok)
	require.Nil(t, in.ExpiresAt)

	bad := config.FromMap(map[string]string{"PRICE_MASK": "x"})
	credits.LoadConfig(bad, "local")
	require.ErrorContains(t, bad.Err(), "PRICE_MASK")
	neg := credits.LoadConfig(config.FromMap(map[string]string{"PRICE_MASK": "-1", "SIGNUP_BONUS_CREDITS": "-5"}), "local")
	require.ErrorContains(t, neg.Validate(), "PRICE_MASK")
	require.ErrorContains(t, neg.Validate(), "SIGNUP_BONUS_CREDITS")

	_, err := credits.NewPricing(map[string]int64{"teleport": 1})
	require.Error(t, err)
}
