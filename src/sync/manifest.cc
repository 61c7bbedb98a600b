#include "sync/manifest.h"

#include <algorithm>
#include <charconv>

namespace ds {

std::string_view Manifest::PathAt(size_t i) const {
  const Chunk& c = *chunks_[i / kChunkEntries];
  const Record& r = c.records[i % kChunkEntries];
  return std::string_view(c.text.data() + r.path_offset, r.path_length);
}

bool Manifest::Add(std::string_view path, uint64_t size, int64_t mtime_ns,
                   const Sha256Digest& sha256) {
  if (size_ > released_ && !(PathAt(size_ - 1) < path)) return false;
  if (size_ % kChunkEntries == 0) {
    auto chunk = std::make_unique<Chunk>();
    chunk->records.reserve(kChunkEntries);
    // Typical paths are 30–60 bytes: one allocation for most chunks.
    chunk->text.reserve(kChunkEntries * 48);
    chunks_.push_back(std::move(chunk));
  }
  Chunk& c = *chunks_.back();
  Record r;
  r.sha256 = sha256;
  r.size = size;
  r.mtime_ns = mtime_ns;
  r.path_offset = static_cast<uint32_t>(c.text.size());
  r.path_length = static_cast<uint32_t>(path.size());
  c.text.append(path);
  c.records.push_back(r);
  ++size_;
  total_bytes_ += size;
  return true;
}

bool Manifest::Add(const protocol::ManifestEntry& e) {
  Sha256Digest d;
  return ParseSha256Hex(e.sha256, &d) && Add(e.path, e.size, e.mtime_ns, d);
}

Manifest::Ref Manifest::operator[](size_t i) const {
  const Record& r = RecordAt(i);
  return Ref{PathAt(i), r.size, r.mtime_ns, &r.sha256};
}

protocol::ManifestEntry Manifest::Wire(size_t i) const {
  const Record& r = RecordAt(i);
  protocol::ManifestEntry e;
  e.path = std::string(PathAt(i));
  e.size = r.size;
  e.mtime_ns = r.mtime_ns;
  e.sha256 = Sha256DigestHex(r.sha256);
  return e;
}

size_t Manifest::LowerBound(std::string_view path, size_t from) const {
  size_t lo = std::max(from, released_), hi = size_;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (PathAt(mid) < path) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

std::optional<size_t> Manifest::Find(std::string_view path) const {
  size_t i = LowerBound(path);
  if (i < size_ && PathAt(i) == path) return i;
  return std::nullopt;
}

void Manifest::ReleaseBefore(size_t i) {
  i = std::min(i, size_);
  for (size_t c = released_ / kChunkEntries; c < i / kChunkEntries; ++c) chunks_[c].reset();
  released_ = std::max(released_, i / kChunkEntries * kChunkEntries);
}

size_t Manifest::MemoryBytes() const {
  size_t bytes = chunks_.capacity() * sizeof(chunks_[0]);
  for (const auto& c : chunks_) {
    if (c) bytes += sizeof(Chunk) + c->records.capacity() * sizeof(Record) + c->text.capacity();
  }
  return bytes;
}

ManifestDigester::ManifestDigester() {
  hash_.Update("datasync-manifest-v1\n");
  buf_.reserve(70 << 10);
}

void ManifestDigester::Add(std::string_view path, uint64_t size, int64_t mtime_ns,
                           std::string_view sha256_hex) {
  char num[24];
  buf_.append(path).push_back('\0');
  buf_.append(num, std::to_chars(num, num + sizeof num, size).ptr).push_back('\0');
  buf_.append(num, std::to_chars(num, num + sizeof num, mtime_ns).ptr).push_back('\0');
  buf_.append(sha256_hex).push_back('\n');
  // Hashed in large pieces (one EVP call per ~64 KiB).
  if (buf_.size() >= (64 << 10)) {
    hash_.Update(buf_);
    buf_.clear();
  }
}

void ManifestDigester::Add(const Manifest::Ref& e) {
  char num[24];
  buf_.append(e.path).push_back('\0');
  buf_.append(num, std::to_chars(num, num + sizeof num, e.size).ptr).push_back('\0');
  buf_.append(num, std::to_chars(num, num + sizeof num, e.mtime_ns).ptr).push_back('\0');
  AppendSha256DigestHex(*e.sha256, &buf_);
  buf_.push_back('\n');
  if (buf_.size() >= (64 << 10)) {
    hash_.Update(buf_);
    buf_.clear();
  }
}

std::string ManifestDigester::FinishHex() {
  hash_.Update(buf_);
  buf_.clear();
  return hash_.FinishHex();
}

}  // namespace ds
