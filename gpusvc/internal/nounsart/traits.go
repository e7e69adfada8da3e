package nounsart

import (
	"strings"
	"unicode"
)

// Tokenize lowercases s and splits it into words of letters and digits;
// the word "no" becomes "none" so that "no accessory" names accessory-none.
func Tokenize(s string) []string {
	words := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	for i, w := range words {
		if w == "no" {
			words[i] = "none"
		}
	}
	return words
}

// layerKeyword maps the words that name a layer in a prompt to the layer.
func layerKeyword(w string) (Layer, bool) {
	switch w {
	case "noggles", "noggle", "glasses", "specs", "spectacles", "goggles", "shades":
		return Glasses, true
	case "head", "heads":
		return Head, true
	case "accessory", "accessories", "shirt", "tee", "tshirt":
		return Accessory, true
	case "body", "bodies", "torso":
		return Body, true
	case "background", "backdrop", "bg":
		return Background, true
	}
	return 0, false
}

// stopword reports words that only break ties between part names (some
// names contain them, like body-peachy-a or accessory-stripes-and-checks).
func stopword(w string) bool {
	switch w {
	case "a", "an", "the", "and", "with", "of", "in", "on", "wearing", "plus":
		return true
	}
	return false
}

// Selection is the result of reading a prompt: the traits it names.
type Selection struct {
	// Seed holds the chosen index for every layer in Pinned; other entries
	// are zero.
	Seed Seed
	// Pinned is the set of layers the prompt chose.
	Pinned LayerSet
}

// Apply returns base with the pinned layers replaced by the selection's.
func (sel Selection) Apply(base Seed) Seed {
	for _, l := range Layers() {
		if sel.Pinned.Has(l) {
			base[l] = sel.Seed[l]
		}
	}
	return base
}

// Select reads trait names from a prompt.
//
// The prompt is split into clauses at punctuation (, . ; : ! ? and line
// breaks). Inside a clause, each layer word ("head", "noggles"/"glasses",
// "body", "accessory"/"shirt", "background") claims the words before it
// since the previous layer word: "red noggles" → glasses whose name best
// matches {red} (glasses-square-red). A layer word with no other words
// before it is kept as a description word of the next one, so "a glasses big
// head" names head-glasses-big and "head shark" names head-shark. Words
// after the last layer word that name a head completely ("a cat") pick that
// head. Within a layer the best part matches the most words, then the most
// tie-break words (a, and, ...), then has the fewest unmatched name words,
// then the lowest index. The first mention of a layer wins.
func (a *Art) Select(prompt string) Selection {
	var sel Selection
	pin := func(l Layer, idx int) {
		if idx >= 0 && !sel.Pinned.Has(l) {
			sel.Seed[l] = idx
			sel.Pinned = sel.Pinned.With(l)
		}
	}
	clauses := strings.FieldsFunc(prompt, func(r rune) bool {
		return strings.ContainsRune(",.;:!?\n\r", r)
	})
	for _, clause := range clauses {
		var seg []string
		carried := Layer(-1)
		for _, w := range Tokenize(clause) {
			l, ok := layerKeyword(w)
			if !ok {
				seg = append(seg, w)
				continue
			}
			if hasContent(seg) {
				pin(l, a.bestPart(l, seg))
				seg, carried = nil, -1
				continue
			}
			if carried < 0 {
				carried = l
			}
			seg = append(seg, w)
		}
		if !hasContent(seg) {
			continue
		}
		if carried >= 0 {
			pin(carried, a.bestPart(carried, seg))
			continue
		}
		pin(Head, a.fullHead(seg))
	}
	return sel
}

// hasContent reports whether words holds a word that is not a stopword.
func hasContent(words []string) bool {
	for _, w := range words {
		if !stopword(w) {
			return true
		}
	}
	return false
}

// bestPart returns the part of l that best matches words (see Select), or -1
// when no part shares a content word with them.
func (a *Art) bestPart(l Layer, words []string) int {
	set := make(map[string]bool, len(words))
	for _, w := range words {
		set[w] = true
	}
	best, bestContent, bestStop, bestUnmatched := -1, 0, 0, 0
	for i, p := range a.parts[l] {
		content, stop, unmatched := 0, 0, 0
		for _, t := range p.Tokens {
			switch {
			case !set[t]:
				unmatched++
			case stopword(t):
				stop++
			default:
				content++
			}
		}
		if content == 0 {
			continue
		}
		if best < 0 || content > bestContent ||
			content == bestContent && (stop > bestStop || stop == bestStop && unmatched < bestUnmatched) {
			best, bestContent, bestStop, bestUnmatched = i, content, stop, unmatched
		}
	}
	return best
}

// fullHead returns the head all of whose name words appear in words (the
// longest such name, then the lowest index), or -1.
func (a *Art) fullHead(words []string) int {
	set := make(map[string]bool, len(words))
	for _, w := range words {
		set[w] = true
	}
	best, bestLen := -1, 0
	for i, p := range a.parts[Head] {
		all := len(p.Tokens) > 0
		for _, t := range p.Tokens {
			if !set[t] {
				all = false
				break
			}
		}
		if all && hasContent(p.Tokens) && len(p.Tokens) > bestLen {
			best, bestLen = i, len(p.Tokens)
		}
	}
	return best
}

// Phrase describes part idx of layer l in words Select reads back:
// "a shark head", "square red noggles", "a teal body", "no accessory",
// "a cool background".
func (a *Art) Phrase(l Layer, idx int) string {
	words := strings.Join(a.parts[l][idx].Tokens, " ")
	switch l {
	case Glasses:
		return words + " noggles"
	case Accessory:
		if words == "none" {
			return "no accessory"
		}
	}
	return article(words) + " " + words + " " + l.String()
}

func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

// Describe returns a prompt-like description of a Noun, e.g. "a noun with
// a shark head, square red noggles, a teal body, a txt noun multicolor
// accessory, a warm background"; Select(Describe(s)) pins s exactly.
func (a *Art) Describe(s Seed) string {
	return "a noun with " + a.Phrase(Head, s[Head]) + ", " + a.Phrase(Glasses, s[Glasses]) + ", " +
		a.Phrase(Body, s[Body]) + ", " + a.Phrase(Accessory, s[Accessory]) + ", " +
		a.Phrase(Background, s[Background])
}
