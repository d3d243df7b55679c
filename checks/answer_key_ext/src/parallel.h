// A tiny parallel-for over [0, n) for the CPU kernels (they run inside one MLX CPU task).
#pragma once

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace tiny_llm_ext_key {

// Runs fn(i) for i in [0, n) on up to hardware_concurrency threads, handing out indices
// one by one (uneven work, such as causal attention rows, stays balanced). Runs inline
// when the work is small (`serial`).
template <typename F>
void parallel_for(int n, bool serial, F &&fn) {
    int workers = static_cast<int>(std::min<unsigned>(std::thread::hardware_concurrency(), 16u));
    workers = std::min(workers, n);
    if (serial || workers <= 1) {
        for (int i = 0; i < n; ++i) fn(i);
        return;
    }
    std::atomic<int> next{0};
    auto run = [&]() {
        for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
    };
    std::vector<std::thread> threads;
    threads.reserve(workers - 1);
    for (int t = 0; t < workers - 1; ++t) threads.emplace_back(run);
    run();
    for (auto &t : threads) t.join();
}

}  // namespace tiny_llm_ext_key
