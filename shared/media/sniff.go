package media

import (
	"bytes"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nounsai/sdserver/shared/apperr"
)

// SniffAudio reports the audio format of data from its first bytes: "mp3"
// (MPEG frame sync), "aac" (ADTS), "wav", "ogg", "flac", "m4a", "aiff" or
// "webm". An ID3v2 tag is skipped and what follows it must be one of
// those: an ID3 header alone proves nothing (an ID3-prefixed HLS playlist
// would make ffmpeg read the local files it names, issue 13.6). Anything
// else is an Invalid error.
func SniffAudio(data []byte) (string, error) {
	// Skip ID3v2 tags (there may be several, and a padded one), each a
	// 10-byte header with a syncsafe size, plus a 10-byte footer when
	// flagged.
	for i := 0; i < 4 && len(data) >= 10 && bytes.HasPrefix(data, []byte("ID3")); i++ {
		sz := int(data[6]&0x7f)<<21 | int(data[7]&0x7f)<<14 | int(data[8]&0x7f)<<7 | int(data[9]&0x7f)
		if data[6]|data[7]|data[8]|data[9] >= 0x80 {
			return "", errNotAudio
		}
		n := 10 + sz
		if data[5]&0x10 != 0 {
			n += 10
		}
		if n > len(data) {
			return "", errNotAudio
		}
		data = bytes.TrimLeft(data[n:], "\x00")
	}
	switch {
	case len(data) < 12:
	case bytes.HasPrefix(data, []byte("ID3")):
	case data[0] == 0xFF && data[1]&0xE0 == 0xE0 && data[1]&0x06 != 0:
		// MPEG audio frame sync with a valid layer (mp3/mp2); ADTS AAC has
		// layer bits 00 and is handled below.
		return "mp3", nil
	case data[0] == 0xFF && data[1]&0xF6 == 0xF0:
		return "aac", nil
	case bytes.HasPrefix(data, []byte("RIFF")) && bytes.Equal(data[8:12], []byte("WAVE")):
		return "wav", nil
	case bytes.HasPrefix(data, []byte("OggS")):
		return "ogg", nil
	case bytes.HasPrefix(data, []byte("fLaC")):
		return "flac", nil
	case bytes.HasPrefix(data, []byte("FORM")) && (bytes.Equal(data[8:12], []byte("AIFF")) || bytes.Equal(data[8:12], []byte("AIFC"))):
		return "aiff", nil
	case bytes.Equal(data[4:8], []byte("ftyp")) && isAudioBrand(data[8:12]):
		return "m4a", nil
	case bytes.HasPrefix(data, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		return "webm", nil
	}
	return "", errNotAudio
}

var errNotAudio = apperr.Invalid("The file is not a supported audio file (MP3, WAV, OGG, FLAC, M4A, AAC, AIFF or WebM)")

func isAudioBrand(b []byte) bool {
	switch string(b) {
	case "M4A ", "M4B ", "mp42", "isom", "dash", "M4P ":
		return true
	}
	return false
}

// SniffVideo reports the container of data from its first bytes: "mp4"
// (ISO BMFF / QuickTime), "webm" (Matroska) or "avi". Anything else is an
// Invalid error. The decoder (ffprobe) has the last word.
func SniffVideo(data []byte) (string, error) {
	switch {
	case len(data) < 12:
	case bytes.Equal(data[4:8], []byte("ftyp")):
		return "mp4", nil
	case bytes.Equal(data[4:8], []byte("moov")) || bytes.Equal(data[4:8], []byte("mdat")) || bytes.Equal(data[4:8], []byte("wide")):
		return "mp4", nil
	case bytes.HasPrefix(data, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		return "webm", nil
	case bytes.HasPrefix(data, []byte("RIFF")) && bytes.Equal(data[8:12], []byte("AVI ")):
		return "avi", nil
	}
	return "", apperr.Invalid("The file is not a supported video (MP4, MOV, WebM or AVI)")
}

// MaxFilenameLen is the longest filename SanitizeFilename returns, in bytes.
const MaxFilenameLen = 128

// SanitizeFilename reduces a client-supplied filename to a safe base name:
// any directory part (with / or \) is dropped, characters other than
// letters, digits, space, '.', '_' and '-' become '_', leading dots and
// spaces are trimmed, and the result is at most MaxFilenameLen bytes. A
// name with nothing left becomes fallback. The result can never be "." or
// "..", contain a path separator or a control character.
func SanitizeFilename(name, fallback string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	name = path.Base(name)
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == utf8.RuneError:
			b.WriteByte('_')
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-' || r == ' ':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(strings.TrimSpace(b.String()), ". ")
	for len(s) > MaxFilenameLen {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	s = strings.TrimSpace(s)
	if s == "" || strings.Trim(s, "._ ") == "" {
		return fallback
	}
	return s
}
