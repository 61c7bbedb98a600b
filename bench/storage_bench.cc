// Directory storage alone, without agent or server: stages every file of a source tree with
// Storage::StagePut on N threads and commits them in groups with CommitPuts, as the agent does.
// Not a test. Prints wall time and this process's CPU time (user / system).
//   build/bench/storage_bench SRC_DIR DEST_DIR [threads=2] [group=1000] [temp-names]
// DEST_DIR should be new: existing objects take the compare-and-keep-version path.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/dir/dir_storage.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SRC_DIR DEST_DIR [threads] [group] [temp-names]\n", argv[0]);
    return 2;
  }
  const std::filesystem::path src = argv[1];
  const size_t threads = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 2;
  const size_t group = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 1000;
  std::vector<std::string> keys;
  const std::string prefix = src.string() + "/";
  for (const auto& e : std::filesystem::recursive_directory_iterator(src)) {
    if (e.is_regular_file()) keys.push_back(e.path().string().substr(prefix.size()));
  }
  // "temp-names": stage under temp names instead of O_TMPFILE files (the fallback path).
  const bool temp_names = argc > 5 && std::string(argv[5]) == "temp-names";
  auto storage = ds::OpenDirStorage(argv[2], ds::DirStorageOptions{.unnamed_files = !temp_names});
  if (!storage.ok()) {
    std::fprintf(stderr, "%s\n", std::string(storage.status().message()).c_str());
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::mutex mu;
  std::vector<std::unique_ptr<ds::StagedPut>> staged;
  std::atomic<size_t> next{0}, failed{0}, committed{0};
  std::atomic<size_t> done_threads{0};
  double commit_seconds = 0;  // the committing thread's time in CommitPuts
  size_t groups = 0;
  auto commit = [&](std::vector<std::unique_ptr<ds::StagedPut>> batch) {
    const auto c0 = std::chrono::steady_clock::now();
    for (const auto& r : (*storage)->CommitPuts(std::move(batch))) {
      if (r.ok()) ++committed; else ++failed;
    }
    commit_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
    ++groups;
  };
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < keys.size();) {
        ds::PutOptions po;
        po.run_id = "benchrun";
        auto s = (*storage)->StagePut(keys[i], prefix + keys[i], po);
        if (!s.ok()) {
          ++failed;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        staged.push_back(std::move(*s));
      }
      ++done_threads;
    });
  }
  for (;;) {
    std::vector<std::unique_ptr<ds::StagedPut>> batch;
    bool last = done_threads == threads;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (staged.size() >= group || last) batch.swap(staged);
    }
    if (!batch.empty()) commit(std::move(batch));
    if (last) break;
    if (batch.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (auto& t : pool) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("files %zu committed %zu failed %zu wall %.3f s user %.2f s sys %.2f s; %zu groups, "
              "%.3f s in CommitPuts\n", keys.size(), committed.load(), failed.load(), wall,
              ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
              groups, commit_seconds);
  return failed == 0 ? 0 : 1;
}
