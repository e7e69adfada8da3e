package media

// ProtocolWhitelist is what ffmpeg and ffprobe may open while reading user
// media: the file named on the command line or a pipe. A "media" file that
// is really a playlist (HLS #EXTM3U, concat, ...) naming other local files
// or URLs then fails instead of being followed (issue 13.6).
const ProtocolWhitelist = "file,pipe"

// demuxers maps the formats SniffAudio and SniffVideo report to ffmpeg's
// input format names.
var demuxers = map[string]string{
	"mp3": "mp3", "aac": "aac", "wav": "wav", "ogg": "ogg", "flac": "flac", "aiff": "aiff",
	"m4a": "mov", "mp4": "mov", "webm": "matroska", "avi": "avi",
}

// InputArgs returns the ffmpeg/ffprobe options that must precede the
// "-i <file>" of user media whose content was sniffed as format (a value
// of SniffAudio or SniffVideo): the protocol whitelist and the forced
// input format, so that ffmpeg never probes the content into another
// demuxer (an ID3-prefixed HLS playlist into "hls"). ok is false for a
// format ffmpeg is not told about here, and the caller must refuse the
// file.
func InputArgs(format string) (args []string, ok bool) {
	d, ok := demuxers[format]
	if !ok {
		return nil, false
	}
	return []string{"-protocol_whitelist", ProtocolWhitelist, "-f", d}, true
}
