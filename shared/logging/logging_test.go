package logging_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/logging"
)

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "console"} {
		log, err := logging.New(format, "info")
		require.NoError(t, err)
		require.True(t, log.Core().Enabled(0)) // info
		require.False(t, log.Core().Enabled(-1), "debug is below info")

		blog, stop, err := logging.NewBuffered(format, "warn")
		require.NoError(t, err)
		require.False(t, blog.Core().Enabled(0), "info is below warn")
		stop()
	}
	_, err := logging.New("xml", "info")
	require.ErrorContains(t, err, "LOG_FORMAT")
	_, err = logging.New("json", "loud")
	require.ErrorContains(t, err, "LOG_LEVEL")
	_, _, err = logging.NewBuffered("json", "loud")
	require.ErrorContains(t, err, "LOG_LEVEL")
}
