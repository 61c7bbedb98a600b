// The one way to turn JSON text from outside the process (requests, server answers, files,
// stored state) into a DOM: bounded in size, nesting depth and number of values before any DOM
// is built, so that no input can overflow the stack of a recursive walk (dump, destruction, a
// from_json) or inflate a small body into a huge tree. tests/check_json_parse.cmake fails the
// build's tests on any other `json::parse(` in src/.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string_view>

#include "absl/status/statusor.h"

namespace ds {

struct JsonLimits {
  size_t max_depth = 32;         // nested arrays/objects; a scalar document is depth 0
  size_t max_bytes = 64 << 20;   // bytes of text
  // Values in the document, object keys included (`[1,{"a":2}]` is 5). The DOM costs up to
  // ~80 bytes a value, so the default bounds one parse to ~100 MiB whatever the text.
  size_t max_values = 1 << 20;
};

// Parses `text` as one JSON document. InvalidArgument, with a message saying which limit or
// where the syntax error is, when the text is over a limit or not JSON. The limits are checked
// by a linear, non-recursive scan of the text before parsing. Never throws.
[[nodiscard]] absl::StatusOr<nlohmann::json> ParseJson(std::string_view text,
                                                       const JsonLimits& limits = {});

// ParseJson, and InvalidArgument unless the document is an object.
[[nodiscard]] absl::StatusOr<nlohmann::json> ParseJsonObject(std::string_view text,
                                                             const JsonLimits& limits = {});

// ParseJson's value, or `fallback` (default: a discarded value, `is_discarded()`) when it fails;
// for values read back from our own index, where a bad value is shown as missing, not refused.
nlohmann::json ParseJsonOr(std::string_view text,
                           nlohmann::json fallback = nlohmann::json::value_t::discarded,
                           const JsonLimits& limits = {});

}  // namespace ds
