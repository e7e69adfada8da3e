package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/nounsai/sdserver/accountsvc/internal/account"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/service"
	"github.com/nounsai/sdserver/shared/storage"
)

// Config is accountsvc's configuration. Each field names its environment
// variable (and legacy config.json key) in LoadConfig.
type Config struct {
	config.Common
	// MetricsAddr is the internal listener serving GET /metrics
	// (METRICS_ADDR; default loopback on the HTTP port + 1000, e.g.
	// 127.0.0.1:9081 for :8081; "off" gives "", no metrics listener). The
	// public listener (api-cpu) answers /metrics with 404.
	MetricsAddr string
	// Areas append their own settings below (one struct per area).

	// Storage is the media storage backend (library area; see
	// storage.LoadConfig for the variables).
	Storage storage.Config
	// Library holds the library area's limits and tools.
	Library LibraryConfig
	// Credits is the ledger's configuration: PRICE_*, SIGNUP_BONUS_CREDITS,
	// SIGNUP_BONUS_DAYS, REFUND_GRANT_DAYS (see credits.LoadConfig).
	Credits credits.Config
	// Jobs are the durable-job settings shared with gpusvc (caps, audio
	// duration, video fps; see jobs.LoadConfig).
	Jobs jobs.Config
	// DevDiscordDir, when set, serves a fake Discord webhook at POST
	// /dev/discord/webhook recording messages to <dir>/discord.jsonl
	// (DEV_DISCORD_DIR; default .run/discord when ENVIRONMENT=local,
	// never in production).
	DevDiscordDir string
	// Accounts holds the accounts area's settings (signup, login, tokens,
	// emails).
	Accounts AccountsConfig
}

// LibraryConfig configures the library routes.
type LibraryConfig struct {
	// ImageMaxSide bounds each side of uploaded images in pixels
	// (IMAGE_MAX_SIDE, default 4096).
	ImageMaxSide int
	// FFmpeg and FFprobe are the binaries that read uploaded videos
	// (FFMPEG_PATH, FFPROBE_PATH; default from PATH).
	FFmpeg, FFprobe string
	// FFmpegTimeout bounds one ffmpeg/ffprobe run (FFMPEG_TIMEOUT, 60s).
	FFmpegTimeout time.Duration
}

func loadLibraryConfig(l *config.Loader) LibraryConfig {
	return LibraryConfig{
		ImageMaxSide:  l.Int("IMAGE_MAX_SIDE", "", 4096),
		FFmpeg:        l.String("FFMPEG_PATH", "", "ffmpeg"),
		FFprobe:       l.String("FFPROBE_PATH", "", "ffprobe"),
		FFmpegTimeout: l.Duration("FFMPEG_TIMEOUT", "", 60*time.Second),
	}
}

// Validate reports every bad library setting, naming its variable.
func (c LibraryConfig) Validate() error {
	var errs []error
	if c.ImageMaxSide < 16 || c.ImageMaxSide > 16384 {
		errs = append(errs, fmt.Errorf("IMAGE_MAX_SIDE: must be between 16 and 16384, got %d", c.ImageMaxSide))
	}
	if c.FFmpegTimeout <= 0 {
		errs = append(errs, errors.New("FFMPEG_TIMEOUT: must be positive"))
	}
	return errors.Join(errs...)
}

// LoadConfig reads the configuration from l and validates it.
func LoadConfig(l *config.Loader) (Config, error) {
	cfg := Config{
		Common:  config.LoadCommon(l, "127.0.0.1:8081"),
		Storage: storage.LoadConfig(l),
		Library: loadLibraryConfig(l),
	}
	cfg.MetricsAddr = config.LoadMetricsAddr(l, cfg.HTTPAddr)
	cfg.Credits = credits.LoadConfig(l, cfg.Environment)
	cfg.Jobs = jobs.LoadConfig(l)
	if cfg.Environment == "local" {
		cfg.DevDiscordDir = l.String("DEV_DISCORD_DIR", "", ".run/discord")
	}
	accounts, err := loadAccountsConfig(l, cfg.Common)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg.Accounts = accounts
	if err := l.Check(cfg.Validate()); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports every bad setting, naming its variable.
func (c Config) Validate() error {
	return errors.Join(c.Common.Validate(), c.Storage.Validate(), c.Library.Validate(), c.Credits.Validate(), c.Accounts.Validate(), c.Jobs.Validate())
}

// AccountsConfig configures the accounts area.
type AccountsConfig struct {
	// TokenTTL is the lifetime of tokens issued at login (TOKEN_TTL,
	// default 720h = 30 days).
	TokenTTL time.Duration
	// LinkKeySecret derives the keys of verification and reset links from
	// the nonces in the email queue (LINK_KEY_SECRET, at least 32 bytes;
	// default: derived from the JWT signing secret). Changing it voids the
	// links of emails still queued.
	LinkKeySecret []byte
	// Argon2 are the parameters of new password hashes (ARGON2_MEMORY_KIB
	// default 19456, ARGON2_TIME default 2, ARGON2_THREADS default 1).
	Argon2 account.Argon2Params
	// Argon2Concurrency is how many password hashes run at once
	// (ARGON2_CONCURRENCY, default one per CPU): each holds
	// ARGON2_MEMORY_KIB while it runs, so this bounds their memory.
	Argon2Concurrency int
	// Email selects the email backend (EMAIL_BACKEND, OUTBOX_DIR,
	// SENDGRID_API_KEY, ...; see email.LoadConfig).
	Email email.Config
}

func loadAccountsConfig(l *config.Loader, common config.Common) (AccountsConfig, error) {
	c := AccountsConfig{
		TokenTTL: l.Duration("TOKEN_TTL", "", 30*24*time.Hour),
		Argon2: account.Argon2Params{
			MemoryKiB: uint32(l.Int64("ARGON2_MEMORY_KIB", "", int64(account.DefaultArgon2.MemoryKiB))),
			Time:      uint32(l.Int64("ARGON2_TIME", "", int64(account.DefaultArgon2.Time))),
			Threads:   uint8(l.Int64("ARGON2_THREADS", "", int64(account.DefaultArgon2.Threads))),
		},
		Argon2Concurrency: l.Int("ARGON2_CONCURRENCY", "", runtime.GOMAXPROCS(0)),
		Email:             email.LoadConfig(l),
	}
	if s := l.Secret("LINK_KEY_SECRET", "", ""); s != "" {
		c.LinkKeySecret = []byte(s)
	} else {
		m := hmac.New(sha256.New, common.JWTSecrets[0])
		m.Write([]byte("nounsai account link keys"))
		c.LinkKeySecret = m.Sum(nil)
	}
	return c, nil
}

// Validate reports every bad accounts setting, naming its variable.
func (c AccountsConfig) Validate() error {
	var errs []error
	if c.TokenTTL < time.Minute || c.TokenTTL > 400*24*time.Hour {
		errs = append(errs, errors.New("TOKEN_TTL: must be between 1m and 9600h"))
	}
	if len(c.LinkKeySecret) < 32 {
		errs = append(errs, errors.New("LINK_KEY_SECRET: must be at least 32 bytes"))
	}
	if err := c.Argon2.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ARGON2_MEMORY_KIB/ARGON2_TIME/ARGON2_THREADS: %w", err))
	}
	if c.Argon2Concurrency < 1 || c.Argon2Concurrency > 1024 {
		errs = append(errs, errors.New("ARGON2_CONCURRENCY: must be between 1 and 1024"))
	}
	if err := c.Email.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// MetricsListenAddr is METRICS_ADDR, the internal listener of /metrics
// (service.MetricsConfig; "" for none).
func (c Config) MetricsListenAddr() string { return c.MetricsAddr }

// The binary opens the metrics listener only for a MetricsConfig.
var _ service.MetricsConfig = Config{}
