package paced_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/nouns"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/paced"
)

func newPaced(t *testing.T, o paced.Options) *paced.Backend {
	t.Helper()
	nb, err := nouns.New(nouns.Options{})
	require.NoError(t, err)
	o.ImageUnits, o.RouteUnits = generate.WorkUnits, generate.RouteUnits
	return paced.New(nb, o)
}

func TestDelay(t *testing.T) {
	t.Parallel()
	require.Zero(t, newPaced(t, paced.Options{}).Delay(10))
	require.Equal(t, 4*time.Second, newPaced(t, paced.Options{BaseSeconds: 1, Speed: 0.5}).Delay(2))
	require.Equal(t, 3*time.Second, newPaced(t, paced.Options{BaseSeconds: 0.5, Slowdown: 3}).Delay(2))
}

// The paced backend keeps the wrapped backend's name, delivers its result
// and, while pacing, gives up when the context ends (a job's deadline).
func TestPacedGenerate(t *testing.T) {
	t.Parallel()
	req := inference.ImageRequest{Op: inference.OpTxt2Img, Prompt: "a frog", Samples: 1, Steps: 25, Width: 64, Height: 64, Seed: 1}
	fast := newPaced(t, paced.Options{BaseSeconds: 0.001})
	require.Equal(t, nouns.Name, fast.Name())
	res, err := fast.Generate(context.Background(), req)
	require.NoError(t, err)
	require.Len(t, res.Images, 1)

	slow := newPaced(t, paced.Options{BaseSeconds: 3600})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = slow.Generate(ctx, req)
	require.True(t, errors.Is(err, context.Canceled), "got %v", err)
	_, err = slow.ExtendPrompt(ctx, "a frog")
	require.True(t, errors.Is(err, context.Canceled), "got %v", err)
}
