// RUN: irkit-opt %s -p fuse | filecheck %s
// RUN: irkit-opt %s -p 'fuse{max-ops=2}' | filecheck %s --check-prefix=SMALL

// fuse groups elementwise, broadcast and reduction work into ikf.kernel ops
// (tensor form: ins(...) and results), one loop nest each; see the docstring
// of passes/fuse.py for the rules pinned here.

builtin.module {

  // max's derivative compares a value with its maximum: the value is stored by a kernel of
  // its own and both the reduction and the comparison read those bits (computed twice, a
  // transcendental may differ in its last bit between two loops)
  // CHECK-LABEL: func.func @compared_with_its_max(
  // CHECK-NEXT:    %[[T:.*]] = ikf.kernel ins(%x : tensor<?x?xf32>) {
  // CHECK-NEXT:    ^{{.*}}(%[[X:.*]]: tensor<?x?xf32>):
  // CHECK-NEXT:      %[[H:.*]] = ik.tanh %[[X]]
  // CHECK-NEXT:      ikf.yield %[[H]] : tensor<?x?xf32>
  // CHECK:         ikf.kernel ins(%[[T]] : tensor<?x?xf32>) {
  // CHECK:           ik.max
  // CHECK:           ik.eq
  func.func @compared_with_its_max(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.tanh %x : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.max %0 {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
    %2 = ik.eq %0, %1 : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xi1>
    %3 = ik.cast %2 : (tensor<?x?xi1>) -> tensor<?x?xf32>
    func.return %3 : tensor<?x?xf32>
  }

  // an elementwise chain (with a broadcast operand) is one kernel
  // CHECK-LABEL: func.func @chain(
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%x, %y : tensor<?x3xf32>, tensor<3xf32>) {
  // CHECK-NEXT:    ^bb0(%[[A:.*]]: tensor<?x3xf32>, %[[B:.*]]: tensor<3xf32>):
  // CHECK-NEXT:      %[[S:.*]] = ik.add %[[A]], %[[B]] : (tensor<?x3xf32>, tensor<3xf32>) -> tensor<?x3xf32>
  // CHECK-NEXT:      %[[E:.*]] = ik.exp %[[S]] : (tensor<?x3xf32>) -> tensor<?x3xf32>
  // CHECK-NEXT:      %[[T:.*]] = ik.tanh %[[E]] : (tensor<?x3xf32>) -> tensor<?x3xf32>
  // CHECK-NEXT:      ikf.yield %[[T]] : tensor<?x3xf32>
  // CHECK-NEXT:    } -> (tensor<?x3xf32>)
  // CHECK-NEXT:    func.return %[[K]] : tensor<?x3xf32>
  // at most 2 ops a kernel: the chain of 3 is cut in two
  // SMALL-LABEL: func.func @chain(
  // SMALL:         %[[K1:.*]] = ikf.kernel
  // SMALL:         %[[K2:.*]] = ikf.kernel ins(%[[K1]]
  // SMALL:         func.return %[[K2]]
  func.func @chain(%x: tensor<?x3xf32>, %y: tensor<3xf32>) -> tensor<?x3xf32> {
    %0 = ik.add %x, %y : (tensor<?x3xf32>, tensor<3xf32>) -> tensor<?x3xf32>
    %1 = ik.exp %0 : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %2 = ik.tanh %1 : (tensor<?x3xf32>) -> tensor<?x3xf32>
    func.return %2 : tensor<?x3xf32>
  }

  // a reduction and its elementwise producer share a kernel
  // CHECK-LABEL: func.func @reduce(
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%x : tensor<?x?xf32>) {
  // CHECK-NEXT:    ^bb0(%[[A:.*]]: tensor<?x?xf32>):
  // CHECK-NEXT:      %[[E:.*]] = ik.exp %[[A]] : (tensor<?x?xf32>) -> tensor<?x?xf32>
  // CHECK-NEXT:      %[[S:.*]] = ik.sum %[[E]] {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:      ikf.yield %[[S]] : tensor<?xf32>
  // CHECK-NEXT:    } -> (tensor<?xf32>)
  // CHECK-NEXT:    func.return %[[K]] : tensor<?xf32>
  func.func @reduce(%x: tensor<?x?xf32>) -> tensor<?xf32> {
    %0 = ik.exp %x : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.sum %0 {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // a reduction of a reduction is still one kernel (each element is read once)
  // CHECK-LABEL: func.func @sum_of_sum(
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%x : tensor<?x?xf32>) {
  // CHECK:           ik.exp
  // CHECK-NEXT:      ik.sum %{{.*}} {axes = array<i64: 1>}
  // CHECK-NEXT:      ik.sum %{{.*}} {axes = array<i64: 0>}
  // CHECK-NEXT:      ikf.yield
  // CHECK-NEXT:    } -> (tensor<f32>)
  // CHECK-NEXT:    func.return %[[K]] : tensor<f32>
  func.func @sum_of_sum(%x: tensor<?x?xf32>) -> tensor<f32> {
    %0 = ik.exp %x : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.sum %0 {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %2 = ik.sum %1 {axes = array<i64: 0>} : (tensor<?xf32>) -> tensor<f32>
    func.return %2 : tensor<f32>
  }

  // matmul stays outside kernels; the bias add and tanh after it are one kernel
  // CHECK-LABEL: func.func @dense(
  // CHECK-NEXT:    %[[M:.*]] = ik.matmul %x, %w : (tensor<?x784xf32>, tensor<784x500xf32>) -> tensor<?x500xf32>
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%[[M]], %b : tensor<?x500xf32>, tensor<500xf32>) {
  // CHECK-NEXT:    ^bb0(
  // CHECK-NEXT:      ik.add
  // CHECK-NEXT:      ik.tanh
  // CHECK-NEXT:      ikf.yield
  // CHECK-NEXT:    } -> (tensor<?x500xf32>)
  // CHECK-NEXT:    func.return %[[K]] : tensor<?x500xf32>
  func.func @dense(%x: tensor<?x784xf32>, %w: tensor<784x500xf32>, %b: tensor<500xf32>) -> tensor<?x500xf32> {
    %0 = ik.matmul %x, %w : (tensor<?x784xf32>, tensor<784x500xf32>) -> tensor<?x500xf32>
    %1 = ik.add %0, %b : (tensor<?x500xf32>, tensor<500xf32>) -> tensor<?x500xf32>
    %2 = ik.tanh %1 : (tensor<?x500xf32>) -> tensor<?x500xf32>
    func.return %2 : tensor<?x500xf32>
  }

  // a transpose read only by a matmul stays outside kernels (BLAS reads it transposed)
  // CHECK-LABEL: func.func @matmul_transposed(
  // CHECK-NEXT:    %[[T:.*]] = ik.transpose %w {perm = array<i64: 1, 0>}
  // CHECK-NEXT:    %[[M:.*]] = ik.matmul %x, %[[T]]
  // CHECK-NEXT:    func.return %[[M]]
  func.func @matmul_transposed(%x: tensor<?x?xf32>, %w: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.transpose %w {perm = array<i64: 1, 0>} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.matmul %x, %0 : (tensor<?x?xf32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %1 : tensor<?x?xf32>
  }

  // a transpose between elementwise ops joins their kernel
  // CHECK-LABEL: func.func @transpose_in_kernel(
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%x : tensor<?x?xf32>) {
  // CHECK-NEXT:    ^bb0(
  // CHECK-NEXT:      ik.exp
  // CHECK-NEXT:      ik.transpose %{{.*}} {perm = array<i64: 1, 0>}
  // CHECK-NEXT:      ik.log
  // CHECK-NEXT:      ikf.yield
  // CHECK-NEXT:    } -> (tensor<?x?xf32>)
  // CHECK-NEXT:    func.return %[[K]]
  func.func @transpose_in_kernel(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.exp %x : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.transpose %0 {perm = array<i64: 1, 0>} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %2 = ik.log %1 : (tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %2 : tensor<?x?xf32>
  }

  // decomposed softmax is ONE kernel: the row max and the row sum are broadcast
  // only along the trailing axis, so they are computed in the same loop nest
  // CHECK-LABEL: func.func @softmax(
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%x : tensor<?x?xf32>) {
  // CHECK-NEXT:    ^bb0(%[[A:.*]]: tensor<?x?xf32>):
  // CHECK-NEXT:      %[[M:.*]] = ik.max %[[A]] {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
  // CHECK-NEXT:      %[[D:.*]] = ik.sub %[[A]], %[[M]]
  // CHECK-NEXT:      %[[E:.*]] = ik.exp %[[D]]
  // CHECK-NEXT:      %[[S:.*]] = ik.sum %[[E]] {axes = array<i64: 1>, keepdims}
  // CHECK-NEXT:      %[[R:.*]] = ik.truediv %[[E]], %[[S]]
  // CHECK-NEXT:      ikf.yield %[[R]] : tensor<?x?xf32>
  // CHECK-NEXT:    } -> (tensor<?x?xf32>)
  // CHECK-NEXT:    func.return %[[K]] : tensor<?x?xf32>
  func.func @softmax(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.max %x {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
    %1 = ik.sub %x, %0 : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
    %2 = ik.exp %1 : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %3 = ik.sum %2 {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
    %4 = ik.truediv %2, %3 : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
    func.return %4 : tensor<?x?xf32>
  }

  // a column sum broadcast back along the LEADING axis would be recomputed for
  // every row inside one loop nest: it is a kernel of its own, written to memory
  // CHECK-LABEL: func.func @center_columns(
  // CHECK-NEXT:    %[[S:.*]] = ikf.kernel ins(%x : tensor<?x3xf32>) {
  // CHECK-NEXT:    ^bb0(
  // CHECK-NEXT:      ik.sum %{{.*}} {axes = array<i64: 0>, keepdims}
  // CHECK-NEXT:      ikf.yield
  // CHECK-NEXT:    } -> (tensor<1x3xf32>)
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%x, %[[S]] : tensor<?x3xf32>, tensor<1x3xf32>) {
  // CHECK-NEXT:    ^bb0(
  // CHECK-NEXT:      ik.sub
  // CHECK-NEXT:      ikf.yield
  // CHECK-NEXT:    } -> (tensor<?x3xf32>)
  // CHECK-NEXT:    func.return %[[K]]
  func.func @center_columns(%x: tensor<?x3xf32>) -> tensor<?x3xf32> {
    %0 = ik.sum %x {axes = array<i64: 0>, keepdims} : (tensor<?x3xf32>) -> tensor<1x3xf32>
    %1 = ik.sub %x, %0 : (tensor<?x3xf32>, tensor<1x3xf32>) -> tensor<?x3xf32>
    func.return %1 : tensor<?x3xf32>
  }

  // exp(v) broadcast along the TRAILING axis (v[:, None]) is computed once per
  // row inside the consumer's loop nest: it joins the kernel
  // CHECK-LABEL: func.func @broadcast_trailing(
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%v, %x : tensor<?xf32>, tensor<?x?xf32>) {
  // CHECK-NEXT:    ^bb0(
  // CHECK-NEXT:      ik.exp
  // CHECK-NEXT:      ik.expand_dims %{{.*}} {axes = array<i64: 1>}
  // CHECK-NEXT:      ik.add
  // CHECK-NEXT:      ikf.yield
  // CHECK-NEXT:    } -> (tensor<?x?xf32>)
  // CHECK-NEXT:    func.return %[[K]]
  func.func @broadcast_trailing(%x: tensor<?x?xf32>, %v: tensor<?xf32>) -> tensor<?x?xf32> {
    %0 = ik.exp %v : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.expand_dims %0 {axes = array<i64: 1>} : (tensor<?xf32>) -> tensor<?x1xf32>
    %2 = ik.add %x, %1 : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
    func.return %2 : tensor<?x?xf32>
  }

  // exp(v) broadcast along the LEADING axis would be recomputed for every row:
  // it is a kernel of its own
  // CHECK-LABEL: func.func @broadcast_leading(
  // CHECK-NEXT:    %[[E:.*]] = ikf.kernel ins(%v : tensor<?xf32>) {
  // CHECK-NEXT:    ^bb0(
  // CHECK-NEXT:      ik.exp
  // CHECK-NEXT:      ikf.yield
  // CHECK-NEXT:    } -> (tensor<?xf32>)
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%x, %[[E]] : tensor<?x?xf32>, tensor<?xf32>) {
  // CHECK-NEXT:    ^bb0(
  // CHECK-NEXT:      ik.add
  // CHECK-NEXT:      ikf.yield
  // CHECK-NEXT:    } -> (tensor<?x?xf32>)
  // CHECK-NEXT:    func.return %[[K]]
  func.func @broadcast_leading(%x: tensor<?x?xf32>, %v: tensor<?xf32>) -> tensor<?x?xf32> {
    %0 = ik.exp %v : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.add %x, %0 : (tensor<?x?xf32>, tensor<?xf32>) -> tensor<?x?xf32>
    func.return %1 : tensor<?x?xf32>
  }

  // an expensive value read by two consumers of the same shape is computed
  // once: one kernel with two results
  // CHECK-LABEL: func.func @shared_expensive(
  // CHECK-NEXT:    %[[A:.*]], %[[B:.*]] = ikf.kernel ins(%x : tensor<?xf32>) {
  // CHECK-NEXT:    ^bb0(
  // CHECK-NEXT:      %[[E:.*]] = ik.exp
  // CHECK-NEXT:      %[[L:.*]] = ik.log %[[E]]
  // CHECK-NEXT:      %[[S:.*]] = ik.sin %[[E]]
  // CHECK-NEXT:      ikf.yield %[[L]], %[[S]] : tensor<?xf32>, tensor<?xf32>
  // CHECK-NEXT:    } -> (tensor<?xf32>, tensor<?xf32>)
  // CHECK-NEXT:    func.return %[[A]], %[[B]]
  func.func @shared_expensive(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
    %0 = ik.exp %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.log %0 : (tensor<?xf32>) -> tensor<?xf32>
    %2 = ik.sin %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1, %2 : tensor<?xf32>, tensor<?xf32>
  }

  // an expensive value that is returned and also read by a kernel is one of that
  // kernel's outputs, not a kernel of its own
  // CHECK-LABEL: func.func @returned_and_read(
  // CHECK-NEXT:    %[[E:.*]], %[[S:.*]] = ikf.kernel ins(%x : tensor<?xf32>) {
  // CHECK-NEXT:    ^bb0(
  // CHECK-NEXT:      %[[EI:.*]] = ik.exp
  // CHECK-NEXT:      %[[SI:.*]] = ik.sin %[[EI]]
  // CHECK-NEXT:      ikf.yield %[[EI]], %[[SI]] : tensor<?xf32>, tensor<?xf32>
  // CHECK-NEXT:    } -> (tensor<?xf32>, tensor<?xf32>)
  // CHECK-NEXT:    func.return %[[E]], %[[S]]
  func.func @returned_and_read(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
    %0 = ik.exp %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.sin %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %0, %1 : tensor<?xf32>, tensor<?xf32>
  }

  // exp is read by a full kernel (log, sin: 2 ops of at most 2) and by cos: it becomes an
  // output of cos's kernel, which the full one reads; two kernels, not three
  // SMALL-LABEL: func.func @full_kernel(
  // SMALL-NEXT:    %[[E:.*]], %[[C:.*]] = ikf.kernel ins(%x : tensor<?xf32>) {
  // SMALL-NEXT:    ^bb0(
  // SMALL-NEXT:      %[[EI:.*]] = ik.exp
  // SMALL-NEXT:      %[[CI:.*]] = ik.cos %[[EI]]
  // SMALL-NEXT:      ikf.yield %[[EI]], %[[CI]]
  // SMALL-NEXT:    } -> (tensor<?xf32>, tensor<?xf32>)
  // SMALL-NEXT:    %[[S:.*]] = ikf.kernel ins(%[[E]] : tensor<?xf32>) {
  // SMALL-NEXT:    ^bb0(
  // SMALL-NEXT:      ik.log
  // SMALL-NEXT:      ik.sin
  // SMALL-NEXT:      ikf.yield
  // SMALL-NEXT:    } -> (tensor<?xf32>)
  // SMALL-NEXT:    func.return %[[S]], %[[C]]
  func.func @full_kernel(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
    %0 = ik.exp %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.log %0 : (tensor<?xf32>) -> tensor<?xf32>
    %2 = ik.sin %1 : (tensor<?xf32>) -> tensor<?xf32>
    %3 = ik.cos %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %2, %3 : tensor<?xf32>, tensor<?xf32>
  }

  // a cheap value (neg) is recomputed where it is read, never written to memory:
  // every kernel reads %x itself
  // CHECK-LABEL: func.func @shared_cheap(
  // CHECK-NOT:     ik.neg %x
  // CHECK:         ikf.kernel ins(%x : tensor<?xf32>)
  // CHECK:           ik.neg
  // CHECK-NOT:     ikf.kernel ins(%{{[0-9]+}}
  // CHECK:         func.return
  func.func @shared_cheap(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
    %0 = ik.neg %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.exp %0 : (tensor<?xf32>) -> tensor<?xf32>
    %2 = ik.sin %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1, %2 : tensor<?xf32>, tensor<?xf32>
  }

  // a reshape stays outside kernels (bufferize makes it a view)
  // CHECK-LABEL: func.func @reshape(
  // CHECK-NEXT:    %[[K1:.*]] = ikf.kernel ins(%x : tensor<?x?xf32>)
  // CHECK:           ik.exp
  // CHECK:         %[[R:.*]] = ik.reshape %[[K1]] {shape = array<i64: -1>} : (tensor<?x?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    %[[K2:.*]] = ikf.kernel ins(%[[R]] : tensor<?xf32>)
  // CHECK:           ik.log
  // CHECK:         func.return %[[K2]]
  func.func @reshape(%x: tensor<?x?xf32>) -> tensor<?xf32> {
    %0 = ik.exp %x : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.reshape %0 {shape = array<i64: -1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %2 = ik.log %1 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %2 : tensor<?xf32>
  }

  // a value used only as a size (ik.dim) stays outside; the fill joins the kernel
  // CHECK-LABEL: func.func @sizes(
  // CHECK-NEXT:    %[[D:.*]] = ik.dim %x : (tensor<?x?xf32>) -> tensor<i64>
  // CHECK-NEXT:    %[[K:.*]] = ikf.kernel ins(%[[D]] : tensor<i64>) {
  // CHECK:           ik.fill
  // CHECK:           ik.add
  // CHECK:         } -> (tensor<?x3xf32>)
  // CHECK-NEXT:    func.return %[[K]]
  func.func @sizes(%x: tensor<?x?xf32>) -> tensor<?x3xf32> {
    %0 = ik.constant dense<0.000000e+00> : tensor<f32>
    %1 = ik.dim %x : (tensor<?x?xf32>) -> tensor<i64>
    %2 = ik.fill %0, %1 {shape = array<i64: -2, 3>} : (tensor<f32>, tensor<i64>) -> tensor<?x3xf32>
    %3 = ik.constant dense<1.000000e+00> : tensor<f32>
    %4 = ik.add %2, %3 : (tensor<?x3xf32>, tensor<f32>) -> tensor<?x3xf32>
    func.return %4 : tensor<?x3xf32>
  }

  // a number only an op outside kernels reads (gemm's alpha and beta) stays a bare
  // constant: no kernel stores it (bufferize hands gemm the value)
  // CHECK-LABEL: func.func @gemm_scalars(
  // CHECK-NOT:     ikf.kernel
  // CHECK-DAG:     %[[A:.*]] = ik.constant dense<-1.000000e-01> : tensor<f32>
  // CHECK-DAG:     %[[B:.*]] = ik.constant dense<1.000000e+00> : tensor<f32>
  // CHECK-NOT:     ikf.kernel
  // CHECK:         ik.gemm %c, %a, %b, %[[A]], %[[B]]
  func.func @gemm_scalars(%c: tensor<?x?xf32>, %a: tensor<?x?xf32>, %b: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %alpha = ik.constant dense<-1.000000e-01> : tensor<f32>
    %beta = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.gemm %c, %a, %b, %alpha, %beta : (tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x?xf32>, tensor<f32>, tensor<f32>) -> tensor<?x?xf32>
    func.return %0 : tensor<?x?xf32>
  }
}
