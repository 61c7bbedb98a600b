#include "platform/glob.h"

#include <cstddef>
#include <cstdint>

namespace ds::platform {
namespace {

constexpr size_t kNone = static_cast<size_t>(-1);
constexpr uint32_t kInvalidBase = 0x110000;  // + byte: a byte that does not start valid UTF-8

// Decodes the character at s[i] and moves i past it. An invalid or truncated sequence is one
// character of its first byte (kInvalidBase + byte), so every byte string has one reading.
uint32_t Next(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  int len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
  const uint32_t invalid = kInvalidBase + b0;
  if (len == 1) {
    ++i;
    return b0;
  }
  if (len == 0 || i + len > s.size()) {
    ++i;
    return invalid;
  }
  uint32_t cp = b0 & (0x7F >> len);
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return invalid;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return invalid;
  }
  i += len;
  return cp;
}

// POSIX class `name` ("alpha", ...) holds `c`: ASCII only, as in the C locale. Unknown names
// hold nothing.
bool InClass(std::string_view name, uint32_t c) {
  const bool upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z';
  const bool digit = c >= '0' && c <= '9';
  const bool punct = (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
                     (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
  if (name == "alpha") return upper || lower;
  if (name == "digit") return digit;
  if (name == "alnum") return upper || lower || digit;
  if (name == "upper") return upper;
  if (name == "lower") return lower;
  if (name == "space") return c == ' ' || (c >= '\t' && c <= '\r');
  if (name == "blank") return c == ' ' || c == '\t';
  if (name == "punct") return punct;
  if (name == "xdigit") return digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  if (name == "cntrl") return c < 0x20 || c == 0x7F;
  if (name == "print") return c >= 0x20 && c < 0x7F;
  if (name == "graph") return c > 0x20 && c < 0x7F;
  return false;
}

// Reads one set member's character at p[i] ('\' escapes), moving i past it.
uint32_t SetChar(std::string_view p, size_t& i) {
  if (p[i] == '\\' && i + 1 < p.size()) ++i;
  return Next(p, i);
}

// Matches the set starting at p[i] == '[' against `c`. Returns the index after its ']' and sets
// `hit`, or kNone when the set is not closed (then '[' is a literal).
size_t MatchSet(std::string_view p, size_t i, uint32_t c, bool& hit) {
  ++i;
  bool negate = false;
  if (i < p.size() && (p[i] == '!' || p[i] == '^')) {
    negate = true;
    ++i;
  }
  bool found = false;
  bool first = true;
  while (i < p.size()) {
    if (p[i] == ']' && !first) {
      hit = found != negate;
      return i + 1;
    }
    first = false;
    if (p[i] == '[' && i + 1 < p.size() && p[i + 1] == ':') {
      const size_t end = p.find(":]", i + 2);
      if (end == std::string_view::npos) return kNone;
      found = found || InClass(p.substr(i + 2, end - i - 2), c);
      i = end + 2;
      continue;
    }
    const uint32_t lo = SetChar(p, i);
    if (i + 1 < p.size() && p[i] == '-' && p[i + 1] != ']') {
      ++i;
      const uint32_t hi = SetChar(p, i);
      found = found || (lo <= c && c <= hi);
    } else {
      found = found || c == lo;
    }
  }
  return kNone;
}

// Matches one pattern element at p[pi] (not '*') against the character at n[ni]; on success
// moves both indexes past what they matched.
bool MatchOne(std::string_view p, size_t& pi, std::string_view n, size_t& ni) {
  size_t next_n = ni;
  const uint32_t c = Next(n, next_n);
  if (p[pi] == '?') {
    ++pi;
    ni = next_n;
    return true;
  }
  if (p[pi] == '[') {
    bool hit = false;
    const size_t end = MatchSet(p, pi, c, hit);
    if (end != kNone) {
      if (!hit) return false;
      pi = end;
      ni = next_n;
      return true;
    }
  }
  size_t next_p = pi;
  if (p[next_p] == '\\') {
    if (next_p + 1 == p.size()) return false;  // a trailing '\' matches nothing (as fnmatch)
    ++next_p;
  }
  if (Next(p, next_p) != c) return false;
  pi = next_p;
  ni = next_n;
  return true;
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view name) {
  size_t pi = 0, ni = 0;
  size_t star_p = kNone, star_n = 0;  // where to resume after the last '*'
  while (ni < name.size()) {
    if (pi < pattern.size() && pattern[pi] == '*') {
      while (pi < pattern.size() && pattern[pi] == '*') ++pi;
      star_p = pi;
      star_n = ni;
      continue;
    }
    if (pi < pattern.size() && MatchOne(pattern, pi, name, ni)) continue;
    if (star_p == kNone) return false;
    Next(name, star_n);  // let the '*' take one more character
    pi = star_p;
    ni = star_n;
  }
  while (pi < pattern.size() && pattern[pi] == '*') ++pi;
  return pi == pattern.size();
}

}  // namespace ds::platform
