package generate

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

func TestMaskRoundTrip(t *testing.T) {
	t.Parallel()
	const w, h = 5, 3
	bits := make([]bool, w*h)
	for _, i := range []int{0, 3, 7, 8, 14} {
		bits[i] = true
	}
	packed := PackMask(bits)
	require.Equal(t, []byte{0b10010001, 0b10000010}, packed)
	m, err := UnpackMask(packed, w, h)
	require.NoError(t, err)
	for i, b := range bits {
		require.Equal(t, b, m.Pix[i] == 0xff, i)
	}
	_, err = UnpackMask(packed, 8, 8)
	require.Error(t, err)
}

func TestFit(t *testing.T) {
	t.Parallel()
	tests := []struct{ w, h, max, ww, wh int }{
		{100, 50, 1024, 100, 50},
		{2048, 1024, 1024, 1024, 512},
		{1000, 4000, 1024, 256, 1024},
		{4096, 1, 1024, 1024, 1},
	}
	for _, tt := range tests {
		w, h := fit(tt.w, tt.h, tt.max)
		require.Equal(t, []int{tt.ww, tt.wh}, []int{w, h})
	}
}

func TestValidateLimits(t *testing.T) {
	t.Parallel()
	ok := func() ImageJob {
		return ImageJob{Mode: gpuroute.ModeTxt2Img, Op: inference.OpTxt2Img, Samples: 1, Steps: 25, Width: 512, Height: 512}
	}
	require.NoError(t, func() error { j := ok(); return j.Validate(DefaultLimits) }())
	bad := []func(*ImageJob){
		func(j *ImageJob) { j.Samples = 5 },
		func(j *ImageJob) { j.Samples = 0 },
		func(j *ImageJob) { j.Steps = 51 },
		func(j *ImageJob) { j.Width = 1025 },
		func(j *ImageJob) { j.Height = 63 },
		func(j *ImageJob) { j.Prompt = string(make([]rune, 1001)) },
		func(j *ImageJob) { j.Op, j.Mode = inference.OpImg2Img, gpuroute.ModeImg2Img },
		func(j *ImageJob) {
			j.Op, j.Mode, j.Input, j.Strength, j.HasStrength = inference.OpImg2Img, gpuroute.ModeImg2Img, []byte{1}, 1.5, true
		},
		func(j *ImageJob) {
			j.Op, j.Mode, j.Input, j.Strength = inference.OpControlNetOutlines, gpuroute.ModeOutlines, []byte{1}, 6
		},
		func(j *ImageJob) { j.Op, j.Mode, j.Input = inference.OpInpaint, gpuroute.ModeMask, []byte{1} },
	}
	for i, f := range bad {
		j := ok()
		f(&j)
		require.Error(t, j.Validate(DefaultLimits), i)
	}
	// Legacy fixed values: ControlNet makes one image, Mask one image of 25
	// steps, whatever was asked.
	j := ok()
	j.Op, j.Mode, j.Input, j.Mask, j.Samples, j.Steps = inference.OpInpaint, gpuroute.ModeMask, []byte{1}, []byte{1}, 99, 99
	require.NoError(t, j.Validate(DefaultLimits))
	require.Equal(t, []int{1, 25}, []int{j.Samples, j.Steps})
}

func TestModeOp(t *testing.T) {
	t.Parallel()
	op, name, err := ModeOp("  controlnet   OUTLINES ")
	require.NoError(t, err)
	require.Equal(t, inference.OpControlNetOutlines, op)
	require.Equal(t, gpuroute.ModeOutlines, name)
	_, _, err = ModeOp("Video")
	require.Error(t, err)
	// Every mode of the shared table has an operation here.
	for _, m := range gpuroute.Modes() {
		_, name, err := ModeOp(string(m))
		require.NoError(t, err, m)
		require.Equal(t, m, name)
	}
}
