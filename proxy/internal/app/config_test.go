package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/proxy/internal/app"
	"github.com/nounsai/sdserver/shared/config"
)

func TestAdmissionSettings(t *testing.T) {
	t.Parallel()
	cfg, err := app.LoadConfig(config.FromMap(map[string]string{}))
	require.NoError(t, err)
	require.Equal(t, "fair", cfg.AdmissionPolicy)
	require.Equal(t, 256, cfg.AdmissionQueueMax)
	require.Equal(t, 20*time.Second, cfg.AdmissionMaxWait)
	require.Equal(t, 0.5, cfg.AdmissionUserShare)
	require.Equal(t, time.Second, cfg.AdmissionSyncInterval)

	cfg, err = app.LoadConfig(config.FromMap(map[string]string{
		"ADMISSION_POLICY": "fifo", "ADMISSION_MAX_WAIT": "5s", "ADMISSION_USER_SHARE": "1",
	}))
	require.NoError(t, err)
	require.Equal(t, "fifo", cfg.AdmissionPolicy)
	require.Equal(t, 5*time.Second, cfg.AdmissionMaxWait)

	cfg, err = app.LoadConfig(config.FromMap(map[string]string{"ADMISSION_POLICY": "off"}))
	require.NoError(t, err)
	require.Equal(t, app.AdmissionOff, cfg.AdmissionPolicy)

	for name, value := range map[string]string{
		"ADMISSION_POLICY": "lottery", "ADMISSION_QUEUE_MAX": "0", "ADMISSION_MAX_WAIT": "0s",
		"ADMISSION_USER_SHARE": "1.5", "ADMISSION_SYNC_INTERVAL": "-1s",
	} {
		_, err := app.LoadConfig(config.FromMap(map[string]string{name: value}))
		require.ErrorContains(t, err, name, "%s=%s is refused, naming the variable", name, value)
	}
}
