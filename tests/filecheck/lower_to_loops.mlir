// RUN: irkit-opt %s -p lower-to-loops | filecheck %s
// RUN: irkit-opt %s -p lower-to-loops | filecheck %s --check-prefix=GONE

// lower-to-loops turns each buffer-form ikf.kernel into loops over memrefs
// (scf.for; the outermost loop of an output nest may be an scf.parallel),
// one element at a time: inputs are memref.load, the output is memref.store,
// a reduction is an scf.for carrying its accumulator in iter_args.

// No kernel and no tensor-level op is left anywhere.
// GONE-NOT: ikf.
// GONE-NOT: = ik.
// GONE-NOT: tensor<

builtin.module {

  // elementwise with a broadcast operand: a 2-D nest; y is read at the inner index only
  // CHECK-LABEL: func.func @elementwise(
  // CHECK:         %[[N:.*]] = memref.dim %x, %{{.*}} : memref<?x3xf32>
  // CHECK:         {{(scf.for|"scf.parallel")}}
  // CHECK:           scf.for %[[J:[^ ]*]] = %{{.*}} to %{{.*}} step %{{[^ ]*}} {
  // CHECK-NEXT:        %[[A:.*]] = memref.load %x[%[[I:[a-zA-Z0-9_]+]], %[[J]]] : memref<?x3xf32>
  // CHECK-NEXT:        %[[B:.*]] = memref.load %y[%[[J]]] : memref<3xf32>
  // CHECK-NEXT:        %[[S:.*]] = arith.addf %[[A]], %[[B]] : f32
  // CHECK-NEXT:        %[[E:.*]] = math.exp %[[S]] : f32
  // CHECK-NEXT:        memref.store %[[E]], %o[%[[I]], %[[J]]] : memref<?x3xf32>
  // CHECK-NEXT:      }
  // CHECK:         func.return
  func.func @elementwise(%x: memref<?x3xf32>, %y: memref<3xf32>, %o: memref<?x3xf32>) {
    ikf.kernel ins(%x, %y : memref<?x3xf32>, memref<3xf32>) outs(%o : memref<?x3xf32>) {
    ^bb0(%a: tensor<?x3xf32>, %b: tensor<3xf32>):
      %0 = ik.add %a, %b : (tensor<?x3xf32>, tensor<3xf32>) -> tensor<?x3xf32>
      %1 = ik.exp %0 : (tensor<?x3xf32>) -> tensor<?x3xf32>
      ikf.yield %1 : tensor<?x3xf32>
    }
    func.return
  }

  // two outputs over two dynamic vectors: x + y is sized by x, y * x by y, and bufferize
  // checked that the sizes agree before the kernel, so one loop computes both
  // CHECK-LABEL: func.func @equal_sizes(
  // CHECK:         "scf.parallel"
  // CHECK-NOT:     "scf.parallel"
  // CHECK:           memref.store %{{.*}}, %o1[
  // CHECK-NOT:     "scf.parallel"
  // CHECK:           memref.store %{{.*}}, %o2[
  // CHECK-NOT:     "scf.parallel"
  // CHECK:         func.return
  func.func @equal_sizes(%x: memref<?xf32>, %y: memref<?xf32>, %o1: memref<?xf32>, %o2: memref<?xf32>) {
    ikf.kernel ins(%x, %y : memref<?xf32>, memref<?xf32>) outs(%o1, %o2 : memref<?xf32>, memref<?xf32>) {
    ^bb0(%a: tensor<?xf32>, %b: tensor<?xf32>):
      %0 = ik.add %a, %b : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32>
      %1 = ik.mul %b, %a : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32>
      ikf.yield %0, %1 : tensor<?xf32>, tensor<?xf32>
    }
    func.return
  }

  // a kernel writing its result into its input's buffer (bufferize's in-place reuse) reads
  // and writes one flat view: LLVM then sees one pointer, not two it must check for overlap
  // CHECK-LABEL: func.func @in_place(
  // CHECK:         %[[F:.*]] = memref.collapse_shape %x
  // CHECK-NOT:     memref.collapse_shape
  // CHECK:           %[[V:.*]] = memref.load %[[F]][
  // CHECK-NEXT:      %[[T:.*]] = math.tanh %[[V]] : f32
  // CHECK-NEXT:      memref.store %[[T]], %[[F]][
  func.func @in_place(%x: memref<?x?xf32>) {
    ikf.kernel ins(%x : memref<?x?xf32>) outs(%x : memref<?x?xf32>) {
    ^bb0(%a: tensor<?x?xf32>):
      %0 = ik.tanh %a : (tensor<?x?xf32>) -> tensor<?x?xf32>
      ikf.yield %0 : tensor<?x?xf32>
    }
    func.return
  }

  // a row sum: per row, an scf.for over the columns with the sum in iter_args
  // CHECK-LABEL: func.func @row_sum(
  // CHECK:         {{(scf.for|"scf.parallel")}}
  // CHECK:           %[[INIT:.*]] = arith.constant 0.000000e+00 : [[ACC:f32|f64]]
  // CHECK-NEXT:      %[[SUM:.*]] = scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[ACCV:.*]] = %[[INIT]]) -> ([[ACC]]) {
  // CHECK-NEXT:        memref.load %x[
  // CHECK-NEXT:        math.exp
  // CHECK:             %[[NEXT:.*]] = arith.addf %[[ACCV]], %{{.*}} : [[ACC]]
  // CHECK-NEXT:        scf.yield %[[NEXT]] : [[ACC]]
  // CHECK-NEXT:      }
  // CHECK:           memref.store %{{.*}}, %o[%{{.*}}] : memref<?xf32>
  // CHECK:         func.return
  func.func @row_sum(%x: memref<?x?xf32>, %o: memref<?xf32>) {
    ikf.kernel ins(%x : memref<?x?xf32>) outs(%o : memref<?xf32>) {
    ^bb0(%a: tensor<?x?xf32>):
      %0 = ik.exp %a : (tensor<?x?xf32>) -> tensor<?x?xf32>
      %1 = ik.sum %0 {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
      ikf.yield %1 : tensor<?xf32>
    }
    func.return
  }

  // softmax in one kernel: per row, the max and the sum are each computed ONCE
  // (loops with iter_args before the output loop), and the output loop reuses them
  // CHECK-LABEL: func.func @softmax(
  // CHECK:         {{(scf.for|"scf.parallel")}}
  // CHECK:           %[[MAX:.*]] = scf.for {{.*}} iter_args({{.*}}) -> (f32) {
  // CHECK:             arith.maximumf
  // CHECK:             scf.yield
  // CHECK-NEXT:      }
  // CHECK:           %[[SUM:.*]] = scf.for {{.*}} iter_args({{.*}}) -> ({{f32|f64}}) {
  // CHECK:             arith.subf %{{.*}}, %[[MAX]] : f32
  // CHECK:             math.exp
  // CHECK:             arith.addf
  // CHECK:             scf.yield
  // CHECK-NEXT:      }
  // CHECK:           scf.for %{{[^ ]*}} = %{{.*}} to %{{.*}} step %{{[^ ]*}} {
  // CHECK-NOT:         arith.maximumf
  // CHECK-NOT:         iter_args
  // CHECK:             arith.subf %{{.*}}, %[[MAX]] : f32
  // CHECK-NEXT:        math.exp
  // CHECK-NEXT:        arith.divf
  // CHECK-NEXT:        memref.store %{{.*}}, %o[
  // CHECK-NEXT:      }
  // CHECK:         func.return
  func.func @softmax(%x: memref<?x?xf32>, %o: memref<?x?xf32>) {
    ikf.kernel ins(%x : memref<?x?xf32>) outs(%o : memref<?x?xf32>) {
    ^bb0(%a: tensor<?x?xf32>):
      %1 = ik.max %a {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
      %2 = ik.sub %a, %1 : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
      %3 = ik.exp %2 : (tensor<?x?xf32>) -> tensor<?x?xf32>
      %4 = ik.sum %3 {axes = array<i64: 1>, keepdims} : (tensor<?x?xf32>) -> tensor<?x1xf32>
      %5 = ik.truediv %3, %4 : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
      ikf.yield %5 : tensor<?x?xf32>
    }
    func.return
  }

  // a sum over the leading axis is accumulated in row order (contiguous reads)
  // into a scratch buffer, which is freed at the end
  // CHECK-LABEL: func.func @column_sum(
  // CHECK:         %[[N:.*]] = memref.dim %x, %{{.*}} : memref<?x3xf32>
  // CHECK:         %[[SCRATCH:.*]] = memref.alloc() {{.*}} : memref<1x3x[[ACC:f32|f64]]>
  // CHECK:         scf.for %[[R:[a-zA-Z0-9_]+]] = %{{.*}} to %[[N]] step
  // CHECK-NEXT:      scf.for %[[C:[a-zA-Z0-9_]+]] =
  // CHECK:             memref.load %x[%[[R]], %[[C]]] : memref<?x3xf32>
  // CHECK:             arith.addf {{.*}} : [[ACC]]
  // CHECK:             memref.store %{{.*}}, %[[SCRATCH]][
  // CHECK:         memref.store %{{.*}}, %o[
  // CHECK:         memref.dealloc %[[SCRATCH]]
  // CHECK-NEXT:    func.return
  func.func @column_sum(%x: memref<?x3xf32>, %o: memref<1x3xf32>) {
    ikf.kernel ins(%x : memref<?x3xf32>) outs(%o : memref<1x3xf32>) {
    ^bb0(%a: tensor<?x3xf32>):
      %1 = ik.sum %a {axes = array<i64: 0>, keepdims} : (tensor<?x3xf32>) -> tensor<1x3xf32>
      ikf.yield %1 : tensor<1x3xf32>
    }
    func.return
  }

  // exp(v[i]) does not depend on the inner index: it is computed once per row,
  // before the inner loop (the shallowest level where its index is known)
  // CHECK-LABEL: func.func @hoisted(
  // CHECK:         {{(scf.for|"scf.parallel")}}
  // CHECK:           %[[V:.*]] = memref.load %v[%[[I:[a-zA-Z0-9_]+]]] : memref<?xf32>
  // CHECK-NEXT:      %[[E:.*]] = math.exp %[[V]] : f32
  // CHECK-NEXT:      scf.for %[[J:[a-zA-Z0-9_]+]] = %{{.*}} to %{{.*}} step %{{[^ ]*}} {
  // CHECK-NOT:         math.exp
  // CHECK:             %[[X:.*]] = memref.load %x[%[[I]], %[[J]]] : memref<?x?xf32>
  // CHECK-NEXT:        %[[S:.*]] = arith.addf %[[X]], %[[E]] : f32
  // CHECK-NEXT:        memref.store %[[S]], %o[%[[I]], %[[J]]] : memref<?x?xf32>
  func.func @hoisted(%v: memref<?xf32>, %x: memref<?x?xf32>, %o: memref<?x?xf32>) {
    ikf.kernel ins(%v, %x : memref<?xf32>, memref<?x?xf32>) outs(%o : memref<?x?xf32>) {
    ^bb0(%a: tensor<?xf32>, %b: tensor<?x?xf32>):
      %0 = ik.exp %a : (tensor<?xf32>) -> tensor<?xf32>
      %1 = ik.expand_dims %0 {axes = array<i64: 1>} : (tensor<?xf32>) -> tensor<?x1xf32>
      %2 = ik.add %b, %1 : (tensor<?x?xf32>, tensor<?x1xf32>) -> tensor<?x?xf32>
      ikf.yield %2 : tensor<?x?xf32>
    }
    func.return
  }

  // a transpose in a kernel reads its input at swapped indices
  // CHECK-LABEL: func.func @transpose(
  // CHECK:         {{(scf.for|"scf.parallel")}}
  // CHECK:           scf.for %[[J:[^ ]*]] = %{{.*}} to %{{.*}} step %{{[^ ]*}} {
  // CHECK-NEXT:        %[[V:.*]] = memref.load %x[%[[J]], %[[I:[a-zA-Z0-9_]+]]] : memref<?x?xf64>
  // CHECK-NEXT:        %[[E:.*]] = math.exp %[[V]] : f64
  // CHECK-NEXT:        memref.store %[[E]], %o[%[[I]], %[[J]]] : memref<?x?xf64>
  func.func @transpose(%x: memref<?x?xf64>, %o: memref<?x?xf64>) {
    ikf.kernel ins(%x : memref<?x?xf64>) outs(%o : memref<?x?xf64>) {
    ^bb0(%a: tensor<?x?xf64>):
      %1 = ik.transpose %a {perm = array<i64: 1, 0>} : (tensor<?x?xf64>) -> tensor<?x?xf64>
      %2 = ik.exp %1 : (tensor<?x?xf64>) -> tensor<?x?xf64>
      ikf.yield %2 : tensor<?x?xf64>
    }
    func.return
  }

  // ops outside kernels are left as they are
  // CHECK-LABEL: func.func @no_kernel(
  // CHECK-NEXT:    memref.alloc
  // CHECK-NEXT:    func.return
  func.func @no_kernel() -> memref<4xf32> {
    %0 = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
    func.return %0 : memref<4xf32>
  }
}
