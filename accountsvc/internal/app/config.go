package app

import (
	"errors"
	"fmt"

	"github.com/nounsai/sdserver/shared/config"
)

// Config is accountsvc's configuration. Each field names its environment
// variable (and legacy config.json key) in LoadConfig.
type Config struct {
	config.Common
	// Areas append their own settings below (one struct per area).
}

// LoadConfig reads the configuration from l and validates it.
func LoadConfig(l *config.Loader) (Config, error) {
	cfg := Config{
		Common: config.LoadCommon(l, "127.0.0.1:8081"),
	}
	if err := l.Err(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// Validate reports every bad setting, naming its variable.
func (c Config) Validate() error {
	return errors.Join(c.Common.Validate())
}
