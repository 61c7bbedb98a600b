// A job's manifest held compactly: one fixed record per file (raw SHA-256, size, mtime) plus its
// path in a shared arena, in chunks, so that a 1,000,000-file manifest takes ~90 MB instead of
// the ~200 bytes per entry of std::string fields, grows without reallocating what it holds, and
// can release what a reader has passed (the hash cache reads the previous manifest front to back
// while the scan builds the next one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "protocol/messages.h"

namespace ds {

class Manifest {
 public:
  // One entry, viewed in place. `path` stays valid while the entry's chunk is held.
  struct Ref {
    std::string_view path;  // relative to the job folder
    uint64_t size;          // bytes
    int64_t mtime_ns;       // Unix nanoseconds
    const Sha256Digest* sha256;
  };

  Manifest() = default;
  Manifest(Manifest&&) noexcept = default;
  Manifest& operator=(Manifest&&) noexcept = default;
  Manifest(const Manifest&) = delete;
  Manifest& operator=(const Manifest&) = delete;

  // Appends an entry. REQUIRES: `path` sorts after the last entry's (byte-wise), so the manifest
  // stays sorted and free of duplicates; checked: returns false (and adds nothing) otherwise.
  bool Add(std::string_view path, uint64_t size, int64_t mtime_ns, const Sha256Digest& sha256);
  // For a manifest built from a wire form (hex SHA-256): false on a malformed hash or order.
  bool Add(const protocol::ManifestEntry& e);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint64_t total_bytes() const { return total_bytes_; }
  // REQUIRES: i < size() and i not released.
  Ref operator[](size_t i) const;
  protocol::ManifestEntry Wire(size_t i) const;  // with hex SHA-256
  // The index of `path`, searching entries not released; nullopt when absent.
  std::optional<size_t> Find(std::string_view path) const;
  // The first index >= `from` whose path is >= `path` (size() when none).
  size_t LowerBound(std::string_view path, size_t from = 0) const;

  // Frees the chunks that hold only entries before `i`; those entries may no longer be read.
  void ReleaseBefore(size_t i);
  // Bytes held (records and path text), for memory accounting.
  size_t MemoryBytes() const;

  // Iterates entries as wire values (tests, small manifests; copies each entry).
  class WireIterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = protocol::ManifestEntry;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = protocol::ManifestEntry;
    WireIterator() = default;
    WireIterator(const Manifest* m, size_t i) : m_(m), i_(i) {}
    protocol::ManifestEntry operator*() const { return m_->Wire(i_); }
    protocol::ManifestEntry operator[](difference_type n) const { return m_->Wire(i_ + n); }
    WireIterator& operator++() { ++i_; return *this; }
    WireIterator operator++(int) { auto t = *this; ++i_; return t; }
    WireIterator& operator--() { --i_; return *this; }
    WireIterator operator--(int) { auto t = *this; --i_; return t; }
    WireIterator& operator+=(difference_type n) { i_ += n; return *this; }
    WireIterator& operator-=(difference_type n) { i_ -= n; return *this; }
    WireIterator operator+(difference_type n) const { return {m_, i_ + n}; }
    WireIterator operator-(difference_type n) const { return {m_, i_ - n}; }
    difference_type operator-(const WireIterator& o) const {
      return static_cast<difference_type>(i_) - static_cast<difference_type>(o.i_);
    }
    auto operator<=>(const WireIterator& o) const { return i_ <=> o.i_; }
    bool operator==(const WireIterator& o) const { return i_ == o.i_; }

   private:
    const Manifest* m_ = nullptr;
    size_t i_ = 0;
  };
  WireIterator begin() const { return {this, 0}; }
  WireIterator end() const { return {this, size_}; }

 private:
  static constexpr size_t kChunkEntries = 4096;
  struct Record {
    Sha256Digest sha256;
    uint64_t size;
    int64_t mtime_ns;
    uint32_t path_offset;  // in the chunk's text
    uint32_t path_length;
  };
  struct Chunk {
    std::vector<Record> records;  // reserved to kChunkEntries
    std::string text;             // the paths, back to back
  };
  const Record& RecordAt(size_t i) const {
    return chunks_[i / kChunkEntries]->records[i % kChunkEntries];
  }
  std::string_view PathAt(size_t i) const;

  std::vector<std::unique_ptr<Chunk>> chunks_;  // null once released
  size_t released_ = 0;                         // entries before this index are released
  size_t size_ = 0;
  uint64_t total_bytes_ = 0;
};

// Streams entries into the manifest digest (see manifest_digest.h) without holding them.
class ManifestDigester {
 public:
  ManifestDigester();
  void Add(std::string_view path, uint64_t size, int64_t mtime_ns, std::string_view sha256_hex);
  void Add(const Manifest::Ref& e);
  std::string FinishHex();  // REQUIRES: called once

 private:
  Sha256 hash_;
  std::string buf_;
};

}  // namespace ds
