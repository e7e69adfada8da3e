package nounsart

import (
	"encoding/binary"

	"golang.org/x/crypto/sha3"
)

// Word is a 256-bit big-endian EVM word.
type Word [32]byte

// IntWord returns v as a uint256 word the way Solidity converts
// uint256(int256(v)): big-endian two's complement, sign-extended, so
// negative seeds are as valid as positive ones.
func IntWord(v int64) Word {
	var w Word
	if v < 0 {
		for i := range 24 {
			w[i] = 0xff
		}
	}
	binary.BigEndian.PutUint64(w[24:], uint64(v))
	return w
}

// Pseudorandom is NounsSeeder's pr: legacy Keccak-256 (the pre-FIPS padding
// Ethereum uses) of abi.encodePacked(blockHash, nounID), the 64 bytes
// blockHash ++ nounID.
func Pseudorandom(blockHash, nounID Word) Word {
	h := sha3.NewLegacyKeccak256()
	h.Write(blockHash[:])
	h.Write(nounID[:])
	var pr Word
	h.Sum(pr[:0])
	return pr
}

// SliceSeed turns pr into a seed as NounsSeeder.generateSeed does: the low
// 240 bits are cut into five 48-bit fields, field i being uint48(pr >> 48i),
// and field i modulo counts[i] selects layer i (background, body,
// accessory, head, glasses). Bits 240–255 are unused. counts must be ≥ 1.
func SliceSeed(pr Word, counts [NumLayers]int) Seed {
	var s Seed
	for i := range NumLayers {
		// Field i occupies bytes [32-6(i+1), 32-6i) of the big-endian word.
		end := 32 - 6*i
		var v uint64
		for _, b := range pr[end-6 : end] {
			v = v<<8 | uint64(b)
		}
		s[i] = int(v % uint64(counts[i]))
	}
	return s
}

// SeedFromInt maps a request seed to traits: NounsSeeder with a zero block
// hash and the seed as the Noun ID, i.e. SliceSeed(Pseudorandom(0,
// IntWord(v)), Counts()). The mapping is pinned to DataVersion: different
// trait counts give different Nouns.
func (a *Art) SeedFromInt(v int64) Seed {
	return SliceSeed(Pseudorandom(Word{}, IntWord(v)), a.Counts())
}
