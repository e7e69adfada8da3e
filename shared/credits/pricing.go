package credits

import (
	"fmt"
	"math"
	"slices"

	"github.com/nounsai/sdserver/shared/config"
)

// Operations that cost credits.
const (
	OpTxt2Img      = "txt2img"
	OpImg2Img      = "img2img"
	OpInpaint      = "inpaint"
	OpControlNet   = "controlnet"
	OpUpscale      = "upscale"
	OpInterrogate  = "interrogate"
	OpExtendPrompt = "extend_prompt"
	OpMask         = "mask"
	OpAudio        = "audio"
	OpVideo        = "video"
)

// Units of a price.
const (
	UnitImage   = "image"
	UnitRequest = "request"
	UnitSecond  = "second"
)

// Price is the price of one unit of an operation.
type Price struct {
	// Op is the operation, one of the Op constants.
	Op string
	// Credits per unit; 0 makes the operation free.
	Credits int64
	// Unit is what one unit is: UnitImage, UnitRequest or UnitSecond.
	Unit string
	// Env is the environment variable that overrides it.
	Env string
}

// defaultPrices is the documented default table, in credits per unit:
//
//	txt2img        1 per image      PRICE_TXT2IMG
//	img2img        1 per image      PRICE_IMG2IMG
//	inpaint        1 per image      PRICE_INPAINT
//	controlnet     2 per image      PRICE_CONTROLNET
//	upscale        1 per image      PRICE_UPSCALE
//	interrogate    1 per request    PRICE_INTERROGATE
//	extend_prompt  1 per request    PRICE_EXTEND_PROMPT
//	mask           1 per request    PRICE_MASK
//	audio          1 per second     PRICE_AUDIO_PER_SECOND
//	video          2 per second     PRICE_VIDEO_PER_SECOND
var defaultPrices = []Price{
	{OpTxt2Img, 1, UnitImage, "PRICE_TXT2IMG"},
	{OpImg2Img, 1, UnitImage, "PRICE_IMG2IMG"},
	{OpInpaint, 1, UnitImage, "PRICE_INPAINT"},
	{OpControlNet, 2, UnitImage, "PRICE_CONTROLNET"},
	{OpUpscale, 1, UnitImage, "PRICE_UPSCALE"},
	{OpInterrogate, 1, UnitRequest, "PRICE_INTERROGATE"},
	{OpExtendPrompt, 1, UnitRequest, "PRICE_EXTEND_PROMPT"},
	{OpMask, 1, UnitRequest, "PRICE_MASK"},
	{OpAudio, 1, UnitSecond, "PRICE_AUDIO_PER_SECOND"},
	{OpVideo, 2, UnitSecond, "PRICE_VIDEO_PER_SECOND"},
}

// MaxPrice bounds a configured per-unit price.
const MaxPrice = 1_000_000

// Pricing is the price table. The zero value is DefaultPricing. It is
// immutable and safe for concurrent use.
type Pricing struct {
	prices []Price
}

// DefaultPricing returns the default table (see the PRICE_* variables in
// LoadPricing).
func DefaultPricing() Pricing { return Pricing{prices: slices.Clone(defaultPrices)} }

// LoadPricing reads the price table from l: one PRICE_* variable per
// operation (PRICE_TXT2IMG, PRICE_IMG2IMG, PRICE_INPAINT, PRICE_CONTROLNET,
// PRICE_UPSCALE, PRICE_INTERROGATE, PRICE_EXTEND_PROMPT, PRICE_MASK,
// PRICE_AUDIO_PER_SECOND, PRICE_VIDEO_PER_SECOND), each defaulting to the
// table in DefaultPricing. Bad values are collected by l (see
// config.Loader.Err) and Validate.
func LoadPricing(l *config.Loader) Pricing {
	p := DefaultPricing()
	for i := range p.prices {
		p.prices[i].Credits = l.Int64(p.prices[i].Env, "", p.prices[i].Credits)
	}
	return p
}

// Validate reports prices outside 0..MaxPrice, naming their variable.
func (p Pricing) Validate() error {
	for _, pr := range p.table() {
		if pr.Credits < 0 || pr.Credits > MaxPrice {
			return fmt.Errorf("%s: must be between 0 and %d, got %d", pr.Env, MaxPrice, pr.Credits)
		}
	}
	return nil
}

func (p Pricing) table() []Price {
	if p.prices == nil {
		return defaultPrices
	}
	return p.prices
}

// Table returns every price, in the documented order.
func (p Pricing) Table() []Price { return slices.Clone(p.table()) }

// Price returns the per-unit price of op; ok is false for an unknown op.
func (p Pricing) Price(op string) (Price, bool) {
	for _, pr := range p.table() {
		if pr.Op == op {
			return pr, true
		}
	}
	return Price{}, false
}

// Cost returns the credits op costs for units units (images, requests or
// seconds, see Price.Unit; round seconds up before calling). units below 1
// count as 1: every call is charged at least one unit. An unknown op is
// never free: it costs the table's highest per-unit price. The result
// saturates at math.MaxInt64 (Debit rejects anything above MaxAmount).
func (p Pricing) Cost(op string, units int) int64 {
	if units < 1 {
		units = 1
	}
	pr, ok := p.Price(op)
	if !ok {
		for _, x := range p.table() {
			pr.Credits = max(pr.Credits, x.Credits)
		}
	}
	if pr.Credits != 0 && int64(units) > math.MaxInt64/pr.Credits {
		return math.MaxInt64
	}
	return pr.Credits * int64(units)
}
