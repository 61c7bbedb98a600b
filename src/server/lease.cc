#include "server/lease.h"

#include <algorithm>

#include "common/log.h"

namespace ds {

IndexLease::IndexLease(StateIndex* index, std::string name, std::string holder, std::string work)
    : index_(index), name_(std::move(name)), holder_(std::move(holder)), work_(std::move(work)) {}

IndexLease::~IndexLease() {
  if (!held_) return;
  if (absl::Status st = index_->ReleaseLease(name_, holder_); !st.ok()) {
    spdlog::warn("{}: releasing the lease: {}", name_, st);
  }
}

bool IndexLease::Claim(int64_t ttl_ms, int64_t now_ms) {
  auto got = index_->TryAcquireLease(name_, holder_, std::max<int64_t>(ttl_ms, 1'000), now_ms);
  if (!got.ok()) {
    spdlog::warn("{}: cannot take the lease: {}", name_, got.status());
    return false;
  }
  if (*got && !held_) spdlog::info("{}: this instance ({}) now {}", name_, holder_, work_);
  if (!*got && held_) spdlog::info("{}: another instance took over: it {}", name_, work_);
  held_ = *got;
  return *got;
}

}  // namespace ds
