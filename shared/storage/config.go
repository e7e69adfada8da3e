package storage

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nounsai/sdserver/shared/config"
)

// The backends.
const (
	BackendLocal = "local"
	BackendBunny = "bunny"
)

// Zone is one Bunny storage zone and its access key.
type Zone struct {
	// Name is the storage zone name (the first path segment of the API).
	Name string
	// AccessKey is the zone's password, sent as the AccessKey header.
	AccessKey string
}

// Config selects and configures the backend. Services load it with
// LoadConfig; tests build it as a literal.
type Config struct {
	// Backend is BackendLocal (default) or BackendBunny (STORAGE_BACKEND).
	Backend string
	// Dir is the local backend's folder (STORAGE_DIR, default .run/storage).
	Dir string
	// LocalURL is the public base of the local backend's files, served by
	// accountsvc at GET /media/... (MEDIA_BASE_URL, default
	// APP_BASE_URL + "/media").
	LocalURL string
	// BunnyURL is the Storage API endpoint (BUNNY_STORAGE_URL, default
	// https://storage.bunnycdn.com).
	BunnyURL string
	// LocationID is the legacy storage_location_id (a regional host id).
	// The legacy system used it only in an unused delete helper and sent
	// every live request to the main endpoint, so it does not change
	// BunnyURL; set BUNNY_STORAGE_URL to use a regional endpoint.
	LocationID string
	// Image, Audio and Video are the zones per kind (legacy keys
	// storage_zone/storage_access_key, storage_zone_audio/..._audio,
	// storage_zone_video/..._video; env STORAGE_ZONE, STORAGE_ACCESS_KEY,
	// STORAGE_ZONE_AUDIO, ...).
	Image, Audio, Video Zone
	// ImageURL, AudioURL and VideoURL are the public pull-zone bases per
	// kind for the Bunny backend (IMAGE_CDN_URL, default none;
	// AUDIO_CDN_URL, default https://nounsai-audio.b-cdn.net;
	// VIDEO_CDN_URL, default https://nounsai-video.b-cdn.net).
	ImageURL, AudioURL, VideoURL string
	// Timeout bounds one Bunny request (STORAGE_TIMEOUT, default 60s).
	Timeout time.Duration
}

// LoadConfig reads the storage settings from l (env first, then the legacy
// config.json keys).
func LoadConfig(l *config.Loader) Config {
	app := strings.TrimRight(l.String("APP_BASE_URL", "app_base_url", "http://127.0.0.1:8080"), "/")
	return Config{
		Backend:    strings.ToLower(l.String("STORAGE_BACKEND", "storage_backend", BackendLocal)),
		Dir:        l.String("STORAGE_DIR", "", ".run/storage"),
		LocalURL:   strings.TrimRight(l.String("MEDIA_BASE_URL", "", app+"/media"), "/"),
		BunnyURL:   strings.TrimRight(l.String("BUNNY_STORAGE_URL", "", "https://storage.bunnycdn.com"), "/"),
		LocationID: l.String("STORAGE_LOCATION_ID", "storage_location_id", ""),
		Image:      Zone{l.String("STORAGE_ZONE", "storage_zone", ""), l.Credential("STORAGE_ACCESS_KEY", "storage_access_key", "")},
		Audio:      Zone{l.String("STORAGE_ZONE_AUDIO", "storage_zone_audio", ""), l.Credential("STORAGE_ACCESS_KEY_AUDIO", "storage_access_key_audio", "")},
		Video:      Zone{l.String("STORAGE_ZONE_VIDEO", "storage_zone_video", ""), l.Credential("STORAGE_ACCESS_KEY_VIDEO", "storage_access_key_video", "")},
		ImageURL:   strings.TrimRight(l.String("IMAGE_CDN_URL", "image_cdn_url", ""), "/"),
		AudioURL:   strings.TrimRight(l.String("AUDIO_CDN_URL", "audio_cdn_url", "https://nounsai-audio.b-cdn.net"), "/"),
		VideoURL:   strings.TrimRight(l.String("VIDEO_CDN_URL", "video_cdn_url", "https://nounsai-video.b-cdn.net"), "/"),
		Timeout:    l.Duration("STORAGE_TIMEOUT", "", 60*time.Second),
	}
}

// Validate reports every bad setting, naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	checkURL := func(name, v string, required bool) {
		if v == "" {
			if required {
				bad(name, "must be set")
			}
			return
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(name, "must be an http(s) URL")
		}
	}
	switch c.Backend {
	case BackendLocal:
		if c.Dir == "" {
			bad("STORAGE_DIR", "must not be empty")
		}
		checkURL("MEDIA_BASE_URL", c.LocalURL, true)
	case BackendBunny:
		checkURL("BUNNY_STORAGE_URL", c.BunnyURL, true)
		for _, z := range []struct {
			env  string
			zone Zone
		}{{"STORAGE_ZONE", c.Image}, {"STORAGE_ZONE_AUDIO", c.Audio}, {"STORAGE_ZONE_VIDEO", c.Video}} {
			if z.zone.Name == "" || !ValidKey(z.zone.Name) || strings.Contains(z.zone.Name, "/") {
				bad(z.env, "must name a storage zone")
			}
			if z.zone.AccessKey == "" {
				bad(strings.Replace(z.env, "ZONE", "ACCESS_KEY", 1), "must be set")
			}
		}
		checkURL("IMAGE_CDN_URL", c.ImageURL, false)
		checkURL("AUDIO_CDN_URL", c.AudioURL, false)
		checkURL("VIDEO_CDN_URL", c.VideoURL, false)
	default:
		bad("STORAGE_BACKEND", "must be local or bunny, got %q", c.Backend)
	}
	if c.Timeout <= 0 {
		bad("STORAGE_TIMEOUT", "must be positive")
	}
	return errors.Join(errs...)
}

// Bunny returns the Bunny backend's settings.
func (c Config) Bunny() BunnyConfig {
	return BunnyConfig{
		BaseURL: c.BunnyURL,
		Zones:   map[Kind]Zone{KindImage: c.Image, KindAudio: c.Audio, KindVideo: c.Video},
		Public:  map[Kind]string{KindImage: c.ImageURL, KindAudio: c.AudioURL, KindVideo: c.VideoURL},
		Timeout: c.Timeout,
	}
}
