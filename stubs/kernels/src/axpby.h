// The warm-up: z = alpha * x + beta * y as an MLX primitive (the MLX extension tutorial).
#pragma once

#include "mlx/ops.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;

namespace tiny_llm_ext {

mx::array axpby(const mx::array &x, const mx::array &y, const float alpha, const float beta,
                mx::StreamOrDevice s = {});

class Axpby : public mx::Primitive {
  public:
    explicit Axpby(mx::Stream stream, float alpha, float beta)
        : mx::Primitive(stream), alpha_(alpha), beta_(beta) {}

    void eval_cpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) override;
    void eval_gpu(const std::vector<mx::array> &inputs, std::vector<mx::array> &outputs) override;

    std::vector<mx::array> jvp(const std::vector<mx::array> &primals,
                               const std::vector<mx::array> &tangents,
                               const std::vector<int> &argnums) override;
    std::vector<mx::array> vjp(const std::vector<mx::array> &primals,
                               const std::vector<mx::array> &cotangents,
                               const std::vector<int> &argnums,
                               const std::vector<mx::array> &outputs) override;
    std::pair<std::vector<mx::array>, std::vector<int>> vmap(const std::vector<mx::array> &inputs,
                                                             const std::vector<int> &axes) override;

    const char *name() const override { return "Axpby"; }
    bool is_equivalent(const mx::Primitive &other) const override;

  private:
    float alpha_;
    float beta_;
};

}  // namespace tiny_llm_ext
