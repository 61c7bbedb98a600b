// Keeping a PostgreSQL password out of messages: what the index and migrate-index share.
#pragma once

#include <string>

namespace ds {

// The password of a libpq connection string (URI or key/value form); "" when it has none or
// does not parse.
std::string ConninfoPassword(const std::string& conninfo);

// `message` as one line (newlines and tabs become spaces, trailing blanks are dropped) with every
// occurrence of `password` replaced by "********". An empty password replaces nothing.
std::string ScrubPassword(std::string message, const std::string& password);

}  // namespace ds
