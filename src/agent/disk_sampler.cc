#include "agent/disk_sampler.h"

#include <thread>

#include "platform/system.h"

namespace ds {

std::shared_ptr<DiskSampler> DiskSampler::Start(std::chrono::milliseconds interval) {
  std::shared_ptr<DiskSampler> sampler(new DiskSampler(interval));
  std::thread([sampler] { sampler->Run(); }).detach();
  return sampler;
}

void DiskSampler::SetFolders(Folders folders) {
  MutexLock lock(&mu_);
  if (folders == folders_) return;
  folders_ = std::move(folders);
  changed_ = true;
  cv_.SignalAll();
}

std::vector<protocol::DiskFree> DiskSampler::Last() {
  MutexLock lock(&mu_);
  std::vector<protocol::DiskFree> out;
  if (Clock::now() - sampled_at_ > 3 * interval_) return out;
  for (const auto& [job, folder] : folders_) {
    for (const auto& d : last_) {
      if (d.job == job && d.path == folder) out.push_back(d);
    }
  }
  return out;
}

void DiskSampler::Stop() {
  MutexLock lock(&mu_);
  stopped_ = true;
  cv_.SignalAll();
}

void DiskSampler::Run() {
  mu_.Lock();
  while (!stopped_) {
    const Folders folders = folders_;
    changed_ = false;
    mu_.Unlock();
    std::vector<protocol::DiskFree> sample;
    for (const auto& [job, folder] : folders) {
      absl::StatusOr<platform::SpaceInfo> space = platform::FreeSpace(folder);
      if (!space.ok()) continue;
      sample.push_back(protocol::DiskFree{job, folder, space->available, space->total});
    }
    mu_.Lock();
    last_ = std::move(sample);
    sampled_at_ = Clock::now();
    const auto until = sampled_at_ + interval_;
    while (!stopped_ && !changed_ && cv_.WaitUntil(&mu_, until)) {
    }
  }
  mu_.Unlock();
}

}  // namespace ds
