// Unicode normalization of names: one name spelled two ways (NFC "é" and NFD "e" + U+0301, as
// macOS and some SMB clients write it) is one name to DataSync.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ds {

// `utf8` in Normalization Form C (canonical composition, Unicode's stable form); nullopt when it
// is not valid UTF-8. ASCII is returned as it is without decoding.
std::optional<std::string> ToNfc(std::string_view utf8);

// True when `utf8` is valid UTF-8 already in NFC.
bool IsNfc(std::string_view utf8);

}  // namespace ds
