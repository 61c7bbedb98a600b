// SHA-256 throughput of the code paths DataSync hashes with, against which
// `openssl speed -evp sha256` (the per-core limit on this machine) is the yardstick:
//   BM_Sha256/N          common/crypto Sha256 (OpenSSL EVP) over N-byte updates, one thread
//   BM_ScanHash/N        ScanJob hashing a tree of 1 MiB files (files not in the hash cache),
//                        with N hashing threads (page cache warm after the first iteration)
//   BM_ManifestDigest/N  the no-op cycle's digest over an N-entry manifest
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "sync/manifest_digest.h"
#include "sync/scanner.h"

namespace {

void BM_Sha256(benchmark::State& state) {
  const std::string data(static_cast<size_t>(state.range(0)), 'x');
  for (auto _ : state) {
    ds::Sha256 h;
    for (int i = 0; i < 64; ++i) h.Update(data.data(), data.size());
    benchmark::DoNotOptimize(h.FinishHex());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 64 * state.range(0));
}
BENCHMARK(BM_Sha256)->Arg(16 << 10)->Arg(1 << 20);

// A tree of 256 files of 1 MiB, made once.
const std::filesystem::path& Tree() {
  static const std::filesystem::path root = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ds-hash-bench.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    std::string content(1 << 20, 'y');
    for (int i = 0; i < 256; ++i) {
      auto p = std::filesystem::path(tmpl) / absl::StrCat("d", i % 8) / absl::StrCat("f", i);
      std::filesystem::create_directories(p.parent_path());
      content[0] = static_cast<char>(i);
      std::ofstream(p, std::ios::binary) << content;
    }
    return std::filesystem::path(tmpl);
  }();
  return root;
}

void BM_ScanHash(benchmark::State& state) {
  ds::ScanOptions o;
  o.root = Tree();
  o.hash_threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    auto r = ds::ScanJob(o, nullptr);
    if (!r.ok() || r->files.size() != 256) state.SkipWithError("scan failed");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 256 * (1 << 20));
}
BENCHMARK(BM_ScanHash)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_ManifestDigest(benchmark::State& state) {
  std::vector<ds::protocol::ManifestEntry> files;
  for (int64_t i = 0; i < state.range(0); ++i) {
    files.push_back({absl::StrCat("2026-11-28/part", i % 10, "/meas_", 1000000 + i, ".dat"),
                     static_cast<uint64_t>(i) * 977, 1'764'000'000'000'000'000 + i, std::string(64, 'e')});
  }
  for (auto _ : state) benchmark::DoNotOptimize(ds::ManifestDigest(files));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_ManifestDigest)->Arg(100'000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
