#include "common/json.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ds {
namespace {

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// One pass over the text, without recursion and without building anything: the deepest nesting
// of arrays and objects and the number of values (strings, keys included; scalars; containers)
// against the limits. Brackets inside strings do not count. Syntax is left to the parser: the
// scan only has to be exact for valid JSON and must never under-count for any text.
absl::Status PreScan(std::string_view text, const JsonLimits& limits) {
  size_t depth = 0, values = 0;
  bool in_string = false, escaped = false, in_scalar = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    const bool structural = c == '{' || c == '[' || c == '}' || c == ']' || c == ',' ||
                            c == ':' || c == '"' || IsJsonSpace(c);
    if (structural) {
      in_scalar = false;
    } else if (!in_scalar) {
      in_scalar = true;  // the first character of a number, true, false or null
      ++values;
    }
    if (c == '"') {
      in_string = true;
      ++values;
    } else if (c == '{' || c == '[') {
      ++values;
      if (++depth > limits.max_depth) {
        return absl::InvalidArgumentError(absl::StrCat(
            "JSON nested deeper than ", limits.max_depth, " levels (at byte ", i, ")"));
      }
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
    if (values > limits.max_values) {
      return absl::InvalidArgumentError(
          absl::StrCat("JSON document has more than ", limits.max_values, " values"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<nlohmann::json> ParseJson(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("JSON text of ", text.size(),
                                                   " bytes exceeds the limit of ",
                                                   limits.max_bytes, " bytes"));
  }
  if (absl::Status st = PreScan(text, limits); !st.ok()) return st;
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("JSON syntax error: ", e.what()));
  }
}

absl::StatusOr<nlohmann::json> ParseJsonObject(std::string_view text, const JsonLimits& limits) {
  absl::StatusOr<nlohmann::json> j = ParseJson(text, limits);
  if (j.ok() && !j->is_object()) return absl::InvalidArgumentError("JSON must be an object");
  return j;
}

nlohmann::json ParseJsonOr(std::string_view text, nlohmann::json fallback,
                           const JsonLimits& limits) {
  absl::StatusOr<nlohmann::json> j = ParseJson(text, limits);
  return j.ok() ? *std::move(j) : std::move(fallback);
}

}  // namespace ds
