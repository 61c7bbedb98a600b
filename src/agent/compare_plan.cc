#include "agent/compare_plan.h"

#include <algorithm>
#include <iterator>

#include "common/paths.h"

namespace ds {

ComparePlan::ComparePlan(const ScanResult& scan, Inputs in) : scan_(scan), in_(std::move(in)) {
  mode_ = in_.send_digest ? Mode::kProbe : Mode::kWhole;
  if (in_.streamed) {
    if (in_.first_sync) mode_ = Mode::kRest;
    std::set_difference(scan.hashed.begin(), scan.hashed.end(), scan.read_by_hook.begin(),
                        scan.read_by_hook.end(), std::back_inserter(rest_));
  }
}

size_t ComparePlan::ListSize() const {
  switch (mode_) {
    case Mode::kDelta:
      return in_.streamed ? rest_.size() : scan_.hashed.size();
    case Mode::kRest:
      return rest_.size();
    default:
      return scan_.files.size();
  }
}

size_t ComparePlan::ListAt(size_t k) const {
  switch (mode_) {
    case Mode::kDelta:
      return in_.streamed ? rest_[k] : scan_.hashed[k];
    case Mode::kRest:
      return rest_[k];
    default:
      return k;
  }
}

protocol::CompareRequest ComparePlan::Next(const std::string& run_id, const std::string& trigger) {
  protocol::CompareRequest req;
  req.run_id = run_id;
  req.trigger = trigger;
  req.total_files = scan_.files.size();
  req.total_bytes = scan_.total_bytes;
  if (mode_ == Mode::kProbe) {
    req.manifest_digest = in_.digest;
    req.base_digest = in_.base_digest;
    req.last = false;
    return req;
  }
  end_ = std::min(ListSize(), off_ + kCompareBatch);
  req.files.reserve(end_ - off_);
  for (size_t k = off_; k < end_; ++k) req.files.push_back(scan_.files.Wire(ListAt(k)));
  req.last = end_ == ListSize();
  if (mode_ == Mode::kDelta) req.base_digest = in_.base_digest;
  if (mode_ == Mode::kRest && req.last && in_.send_digest) req.manifest_digest = in_.digest;
  return req;
}

void ComparePlan::OnAnswer(protocol::CompareResponse&& answer) {
  for (auto& u : answer.upload) Plan(std::move(u));
  if (mode_ == Mode::kProbe) {
    if (answer.manifest_match) {
      matched_ = done_ = true;
    } else {
      mode_ = answer.base_match ? Mode::kDelta : Mode::kWhole;
      off_ = end_ = 0;
    }
    return;
  }
  off_ = end_;
  done_ = off_ >= ListSize();
}

void ComparePlan::OnBaseMoved() {
  mode_ = Mode::kWhole;
  off_ = end_ = 0;
  done_ = false;
  todo_.clear();
  details_.clear();
}

void ComparePlan::Plan(protocol::UploadInstruction&& u) {
  std::optional<size_t> entry = scan_.files.Find(u.path);
  Planned p{entry.value_or(kNotInManifest)};
  if (!entry || !u.url.empty() || u.already_present || !u.kept_version.empty() ||
      u.key != JoinKey(in_.dest_prefix, u.path)) {
    p.detail = static_cast<uint32_t>(details_.size());
    details_.push_back(std::move(u));
  }
  todo_.push_back(p);
}

void ComparePlan::Seal() {
  std::sort(todo_.begin(), todo_.end(),
            [](const Planned& a, const Planned& b) { return a.entry < b.entry; });
}

protocol::UploadInstruction ComparePlan::Instruction(size_t i) const {
  const Planned& p = todo_[i];
  if (p.detail != kNoDetail) return details_[p.detail];
  protocol::UploadInstruction u;
  u.path = std::string(scan_.files[p.entry].path);
  u.key = JoinKey(in_.dest_prefix, u.path);
  return u;
}

bool ComparePlan::AnyDirectWrite() const {
  return std::any_of(todo_.begin(), todo_.end(), [&](const Planned& p) {
    return p.detail == kNoDetail ||
           (details_[p.detail].url.empty() && !details_[p.detail].already_present);
  });
}

uint64_t ComparePlan::PlannedBytes() const {
  uint64_t bytes = 0;
  for (const Planned& p : todo_) {
    if (p.entry != kNotInManifest) bytes += scan_.files[p.entry].size;
  }
  return bytes;
}

std::optional<std::vector<size_t>> ComparePlan::SentUnplanned() const {
  if (mode_ != Mode::kDelta && mode_ != Mode::kRest) return std::nullopt;
  std::vector<size_t> known;
  for (size_t k = 0; k < ListSize(); ++k) {
    if (!IsPlanned(ListAt(k))) known.push_back(ListAt(k));
  }
  return known;
}

bool ComparePlan::IsPlanned(size_t entry) const {
  return std::binary_search(todo_.begin(), todo_.end(), Planned{entry},
                            [](const Planned& a, const Planned& b) { return a.entry < b.entry; });
}

}  // namespace ds
