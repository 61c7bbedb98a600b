// Glob patterns as the job filters use them (what fnmatch(3) with no flags did).
#pragma once

#include <string_view>

namespace ds::platform {

// True when `name` matches `pattern`, fnmatch(3) with flags 0 semantics: '*' matches any run of
// characters including '/' and a leading '.', '?' any one character, "[a-z]" / "[!x]" / "[^x]"
// a set (ranges, POSIX classes such as "[[:digit:]]", ']' first is literal), '\' escapes the next
// character; a '[' without its ']' is literal. Characters are UTF-8 code points (an invalid byte
// is one character), so '?' matches "é"; on ASCII this is exactly fnmatch's result.
// Pure; thread-safe; no allocation.
[[nodiscard]] bool GlobMatch(std::string_view pattern, std::string_view name);

}  // namespace ds::platform
