package nouns

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"strconv"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/media"
)

// Audio limits and format.
const (
	// SampleRate is the audio sample rate in Hz (mono, 16-bit).
	SampleRate = 44100
	// DefaultAudioSec is the duration when DurationSec is 0.
	DefaultAudioSec = 10
	// MaxAudioSec is the longest audio one request may produce, and the
	// longest parent audio_extend accepts.
	MaxAudioSec = 300
	// MaxParentBytes bounds the encoded parent audio.
	MaxParentBytes = 32 << 20
)

// Audio runs text_to_audio and audio_extend; audio_melody and audio_split
// are unsupported.
//
// text_to_audio synthesises a deterministic chiptune from the prompt and
// seed (see tuneFor): a square-wave lead melody, a triangle bass and noise
// drums, DurationSec seconds (default 10, at most 300) at 44.1 kHz, encoded
// to MP3 by ffmpeg. audio_extend decodes Parent with ffmpeg and appends
// DurationSec seconds of continuation. Parent carries no key or tempo, so
// the continuation takes them from the request's prompt and seed: extending
// with the prompt and seed that made the parent keeps its key and tempo.
// The result is one MP3 track.
func (b *Backend) Audio(ctx context.Context, req inference.AudioRequest) (inference.AudioResult, error) {
	if !b.Supports(req.Op) {
		return inference.AudioResult{}, inference.Unsupported(Name, req.Op)
	}
	if len(req.Prompt) > MaxPromptLen {
		return inference.AudioResult{}, apperr.Invalid(fmt.Sprintf("prompt longer than %d bytes", MaxPromptLen))
	}
	sec := req.DurationSec
	if sec == 0 {
		sec = DefaultAudioSec
	}
	if math.IsNaN(sec) || sec < 0 || sec > MaxAudioSec {
		return inference.AudioResult{}, apperr.Invalid(fmt.Sprintf("duration must be between 0 and %d seconds", MaxAudioSec))
	}
	t := tuneFor(req.Prompt, req.Seed)
	n := int(math.Round(sec * SampleRate))
	var pcm []int16
	switch req.Op {
	case inference.OpTextToAudio:
		pcm = t.render(t.rng("text_to_audio", 0), 0, n)
	case inference.OpAudioExtend:
		if len(req.Parent) == 0 || len(req.Parent) > MaxParentBytes {
			return inference.AudioResult{}, apperr.Invalid(fmt.Sprintf("audio_extend needs parent audio of at most %d bytes", MaxParentBytes))
		}
		parent, err := b.decodeMP3(ctx, req.Parent)
		if err != nil {
			return inference.AudioResult{}, err
		}
		if len(parent) > MaxAudioSec*SampleRate {
			return inference.AudioResult{}, apperr.Invalid(fmt.Sprintf("parent audio is longer than %d seconds", MaxAudioSec))
		}
		// Continue on the next bar after the parent's end.
		bar := int(math.Ceil(float64(len(parent)) / t.barSamples()))
		pcm = append(parent, t.render(t.rng("audio_extend", len(parent)), bar, n)...)
	default:
		return inference.AudioResult{}, inference.Unsupported(Name, req.Op)
	}
	mp3, err := b.encodeMP3(ctx, pcm)
	if err != nil {
		return inference.AudioResult{}, err
	}
	return inference.AudioResult{Tracks: [][]byte{mp3}}, nil
}

// tune is the musical frame of a piece: key, mode, tempo and harmony.
type tune struct {
	hash  [32]byte
	root  int     // MIDI note of the key's tonic in the bass octave
	minor bool    // natural minor instead of major
	bpm   float64 // quarter notes per minute
	prog  []int   // chord per bar, as scale degrees (0 = tonic)
	duty  float64 // lead square-wave duty cycle
}

// tuneFor derives a tune from sha256(prompt NUL seed): tonic A1..G#2 (+2
// octaves for the lead), major or minor, 96–160 BPM, one of four
// four-bar progressions, lead duty 12.5/25/50%.
func tuneFor(prompt string, seed int64) tune {
	h := sha256.Sum256([]byte(prompt + "\x00" + strconv.FormatInt(seed, 10)))
	t := tune{hash: h, root: 33 + int(h[0]%12), minor: h[1]&1 == 1, bpm: 96 + float64(h[2]%65)}
	progs := [][]int{{0, 5, 3, 4}, {0, 3, 4, 0}, {0, 4, 5, 3}, {5, 3, 0, 4}}
	if t.minor {
		progs = [][]int{{0, 5, 2, 6}, {0, 3, 4, 0}, {0, 6, 5, 6}, {0, 3, 6, 4}}
	}
	t.prog = progs[h[3]%4]
	t.duty = []float64{0.125, 0.25, 0.5}[h[4]%3]
	return t
}

// rng returns the tune's random source for one part of the output.
func (t tune) rng(part string, offset int) *rand.Rand {
	h := sha256.Sum256(append(append(t.hash[:], part...), strconv.Itoa(offset)...))
	return rand.New(rand.NewPCG(binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:16])))
}

func (t tune) stepSamples() float64 { return 60 / t.bpm / 4 * SampleRate } // one sixteenth
func (t tune) barSamples() float64  { return 16 * t.stepSamples() }

// pitch returns the MIDI note of scale degree d (any integer) above root.
func (t tune) pitch(d int) int {
	major := [7]int{0, 2, 4, 5, 7, 9, 11}
	minor := [7]int{0, 2, 3, 5, 7, 8, 10}
	scale := major
	if t.minor {
		scale = minor
	}
	oct, i := d/7, d%7
	if i < 0 {
		i += 7
		oct--
	}
	return t.root + 12*oct + scale[i]
}

func freq(midi int) float64 { return 440 * math.Pow(2, float64(midi-69)/12) }

// render synthesises n samples starting at bar startBar.
func (t tune) render(rng *rand.Rand, startBar, n int) []int16 {
	buf := make([]float64, n)
	step := t.stepSamples()
	steps := int(math.Ceil(float64(n)/step)) + 1
	at := func(s int) int { return int(math.Round(float64(s) * step)) }

	// Lead: square wave two octaves up, notes of 1–4 sixteenths; chord
	// tones on the beat, a step-wise walk in between, some rests.
	deg := t.prog[startBar%len(t.prog)] + 14
	for s := 0; s < steps; {
		length := []int{1, 2, 2, 2, 4}[rng.IntN(5)]
		bar := startBar + s/16
		chord := t.prog[bar%len(t.prog)]
		if s%4 == 0 {
			target := chord + 14 + []int{0, 2, 4, 7}[rng.IntN(4)]
			deg = target
		} else {
			deg += []int{-2, -1, -1, 1, 1, 2}[rng.IntN(6)]
			deg = min(max(deg, 10), 24)
		}
		if rng.Float64() >= 0.15 {
			square(buf, at(s), at(s+length), freq(t.pitch(deg)), t.duty, 0.16)
		}
		s += length
	}
	// Bass: triangle on every eighth, alternating chord root and fifth.
	for s := 0; s < steps; s += 2 {
		chord := t.prog[(startBar+s/16)%len(t.prog)]
		d := chord
		if s%4 == 2 {
			d = chord + 4
		}
		triangle(buf, at(s), at(s+2)-int(step*0.2), freq(t.pitch(d)), 0.28)
	}
	// Drums: noise kick on 1 and 3, snare on 2 and 4, hats on the off-beats.
	lfsr := uint16(1 + rng.IntN(0x7ffe))
	for s := 0; s < steps; s++ {
		switch s % 16 {
		case 0, 8:
			kick(buf, at(s))
			noise(buf, at(s), 0.02, 0.12, &lfsr, false)
		case 4, 12:
			noise(buf, at(s), 0.1, 0.16, &lfsr, false)
		case 2, 6, 10, 14:
			noise(buf, at(s), 0.03, 0.09, &lfsr, true)
		default:
			if rng.IntN(8) == 0 {
				noise(buf, at(s), 0.02, 0.05, &lfsr, true)
			}
		}
	}
	out := make([]int16, n)
	for i, v := range buf {
		out[i] = int16(math.Max(-1, math.Min(1, v)) * 32000)
	}
	return out
}

// envelope is a short attack and release so notes do not click.
func envelope(i, length int) float64 {
	const attack, release = 100, 600
	e := 1.0
	if i < attack {
		e = float64(i) / attack
	}
	if r := length - i; r < release {
		e = math.Min(e, float64(r)/release)
	}
	return e
}

func square(buf []float64, start, end int, f, duty, amp float64) {
	end = min(end, len(buf))
	for i := start; i < end; i++ {
		phase := math.Mod(float64(i-start)*f/SampleRate, 1)
		v := -1.0
		if phase < duty {
			v = 1
		}
		buf[i] += amp * v * envelope(i-start, end-start)
	}
}

func triangle(buf []float64, start, end int, f, amp float64) {
	end = min(end, len(buf))
	for i := start; i < end; i++ {
		phase := math.Mod(float64(i-start)*f/SampleRate, 1)
		buf[i] += amp * (4*math.Abs(phase-0.5) - 1) * envelope(i-start, end-start)
	}
}

// kick is a sine sweep from 150 to 45 Hz with a fast decay.
func kick(buf []float64, start int) {
	n := min(int(0.15*SampleRate), len(buf)-start)
	var phase float64
	for i := 0; i < n; i++ {
		t := float64(i) / SampleRate
		phase += (45 + 105*math.Exp(-t*30)) / SampleRate
		buf[start+i] += 0.35 * math.Sin(2*math.Pi*phase) * math.Exp(-t*18)
	}
}

// noise adds a decaying burst from a 15-bit LFSR (the NES noise channel's
// generator); bright bursts are high-passed by differencing.
func noise(buf []float64, start int, decaySec, amp float64, lfsr *uint16, bright bool) {
	n := min(int(decaySec*4*SampleRate), len(buf)-start)
	var prev float64
	for i := 0; i < n; i++ {
		bit := (*lfsr ^ *lfsr>>1) & 1
		*lfsr = *lfsr>>1 | bit<<14
		v := float64(*lfsr&1)*2 - 1
		if bright {
			v, prev = (v-prev)/2, v
		}
		buf[start+i] += amp * v * math.Exp(-float64(i)/(decaySec*SampleRate))
	}
}

// encodeMP3 encodes mono 16-bit PCM at SampleRate to 192 kbit/s MP3.
func (b *Backend) encodeMP3(ctx context.Context, pcm []int16) ([]byte, error) {
	in := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(in[2*i:], uint16(v))
	}
	out, err := b.runFFmpeg(ctx, in, "-f", "s16le", "-ar", strconv.Itoa(SampleRate), "-ac", "1", "-i", "pipe:0",
		"-codec:a", "libmp3lame", "-b:a", "192k", "-f", "mp3", "pipe:1")
	if err != nil {
		return nil, fmt.Errorf("encode mp3: %w", err)
	}
	return out, nil
}

// decodeMP3 decodes audio to mono 16-bit PCM at SampleRate. Undecodable
// input is invalid.
func (b *Backend) decodeMP3(ctx context.Context, data []byte) ([]int16, error) {
	// User audio: ffmpeg reads it as the sniffed format, from the pipe
	// only (issue 13.6).
	format, err := media.SniffAudio(data)
	if err != nil {
		return nil, apperr.Wrap(apperr.KindInvalid, "parent audio could not be decoded", err)
	}
	in, ok := media.InputArgs(format)
	if !ok {
		return nil, apperr.Invalid("parent audio could not be decoded")
	}
	args := append(in, "-i", "pipe:0", "-f", "s16le", "-ac", "1", "-ar", strconv.Itoa(SampleRate), "pipe:1")
	out, err := b.runFFmpeg(ctx, data, args...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, apperr.Wrap(apperr.KindInvalid, "parent audio could not be decoded", err)
	}
	pcm := make([]int16, len(out)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(out[2*i:]))
	}
	return pcm, nil
}

// runFFmpeg runs ffmpeg with stdin as input and returns its stdout.
func (b *Backend) runFFmpeg(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	if b.ffmpeg == "" {
		return nil, errors.New("ffmpeg not available")
	}
	cmd := exec.CommandContext(ctx, b.ffmpeg, append([]string{"-hide_banner", "-loglevel", "error"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg := stderr.String()
		if len(msg) > 500 {
			msg = msg[:500]
		}
		return nil, fmt.Errorf("ffmpeg: %w: %s", err, msg)
	}
	return stdout.Bytes(), nil
}
