#include "storage/dir/dir_errors.h"

#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "platform/dir_extra.h"

namespace ds {
namespace {

constexpr int kBusyAttempts = 8;

}  // namespace

absl::Status StorageError(absl::Status status) {
  if (!platform::IsUnreachable(status) || absl::IsUnavailable(status)) return status;
  absl::Status out = absl::UnavailableError(status.message());
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

absl::Status RetryWhileBusy(const std::function<absl::Status()>& op) {
  auto delay = std::chrono::milliseconds(10);
  absl::Status status = op();
  for (int attempt = 1; platform::IsBusy(status) && attempt < kBusyAttempts; ++attempt) {
    std::this_thread::sleep_for(delay);
    delay *= 2;
    status = op();
  }
  return status;
}

}  // namespace ds
