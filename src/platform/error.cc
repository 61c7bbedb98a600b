#include "platform/error.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace ds::platform {
namespace {

constexpr char kKindPayload[] = "type.datasync/platform.error-kind";
constexpr char kTextPayload[] = "type.datasync/platform.system-text";

}  // namespace

absl::Status WithKind(absl::Status status, ErrorKind kind) {
  if (!status.ok() && kind != ErrorKind::kOther) {
    status.SetPayload(kKindPayload, absl::Cord(std::to_string(static_cast<int>(kind))));
  }
  return status;
}

absl::Status WithSystemText(absl::Status status, std::string_view text) {
  if (!status.ok()) status.SetPayload(kTextPayload, absl::Cord(std::string(text)));
  return status;
}

std::string SystemErrorText(const absl::Status& status) {
  auto text = status.GetPayload(kTextPayload);
  if (text.has_value()) return std::string(*text);
  return std::string(status.message());
}

absl::Status WithContext(const absl::Status& status, std::string_view what) {
  if (status.ok()) return status;
  absl::Status out(status.code(), absl::StrCat(absl::string_view(what.data(), what.size()), ": ",
                                               SystemErrorText(status)));
  status.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

ErrorKind KindOf(const absl::Status& status) {
  auto payload = status.GetPayload(kKindPayload);
  if (!payload.has_value()) return ErrorKind::kOther;
  const std::string s(*payload);
  if (s.empty() || s.size() > 2) return ErrorKind::kOther;
  return static_cast<ErrorKind>(std::stoi(s));
}

}  // namespace ds::platform
