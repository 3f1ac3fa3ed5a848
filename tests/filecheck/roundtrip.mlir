// Every level prints as text that irkit-opt parses back to the same IR: each
// RUN prints one level to a file, re-parses that file and diffs the two texts;
// some then build the next level from the re-parsed text and diff it with the
// one built straight from this file. Each RUN line stands alone.

// tensor level, as written and after the rewrites (ops the passes create)
// RUN: irkit-opt %s -o %t.mlir && irkit-opt %t.mlir | diff -u %t.mlir -
// RUN: irkit-opt %s -p canonicalize,stabilize,cse,dce,decompose -o %t.mlir && irkit-opt %t.mlir | diff -u %t.mlir -

// fused level (tensor-form kernels); bufferizing the re-parsed text gives the same
// RUN: irkit-opt %s -p decompose,fuse -o %t.mlir && irkit-opt %t.mlir | diff -u %t.mlir -
// RUN: irkit-opt %s -p decompose,fuse | irkit-opt -p bufferize,lower-to-loops -o %t.mlir && irkit-opt %s -p decompose,fuse,bufferize,lower-to-loops | diff -u %t.mlir -

// buffer-form kernels, and the loops level built from their re-parsed text
// RUN: irkit-opt %s -p decompose,fuse,bufferize -o %t.mlir && irkit-opt %t.mlir | diff -u %t.mlir -
// RUN: irkit-opt %s -p decompose,fuse,bufferize | irkit-opt -p lower-to-loops -o %t.mlir && irkit-opt %t.mlir | diff -u %t.mlir -

// constants that fold to NaN, inf and -inf print as text that parses back to them
// RUN: irkit-opt %s -p constant-fold,dce -o %t.mlir && irkit-opt %t.mlir | diff -u %t.mlir -
// RUN: irkit-opt %s -p constant-fold,dce | irkit-opt | filecheck %s --check-prefix=SPECIAL

// and the re-parsed fused text keeps every property
// RUN: irkit-opt %s -p decompose,fuse | irkit-opt | filecheck %s

// CHECK-LABEL: func.func @many_ops(
// CHECK-DAG:     ik.slice %{{.*}} {spec = "1:3, ::2"}
// CHECK-DAG:     ik.gather %{{.*}} {axes = array<i64: 0, 1>}
// CHECK-DAG:     ik.concatenate %x, %x {axis = 1 : i64}
// CHECK-DAG:     ik.argmax %{{.*}} {axes = array<i64: 1>}
// CHECK-DAG:     ik.broadcast_to %{{.*}} {shape = array<i64: 4, 3>}
// CHECK-DAG:     ik.set_slice %x, %v {spec = "0, :"}
// CHECK-DAG:     ik.eye {shape = array<i64: 3, 3>}
// CHECK-DAG:     ik.expand_dims %{{.*}} {axes = array<i64: 1>}
// CHECK-DAG:     ik.transpose %{{.*}} {perm = array<i64: 1, 0>}
// CHECK-DAG:     ik.max %{{.*}} {axes = array<i64: 0>, keepdims}
// CHECK-DAG:     ik.max %{{.*}} {axes = array<i64: 1>, keepdims}
// CHECK-DAG:     ik.reshape %{{.*}} {shape = array<i64: -1>}
// CHECK-DAG:     ik.squeeze %{{.*}} {axes = array<i64: 1>}
// CHECK-DAG:     ik.constant dense<[true, false, true]> : tensor<3xi1>
// CHECK-DAG:     ik.constant dense<[1, 2, 3]> : tensor<3xi8>
// CHECK-LABEL: func.func @special_floats(

// SPECIAL-LABEL: func.func @special_floats(
// Non-finite values print in MLIR's hex-string form (little-endian bytes), which parses back exactly.
// SPECIAL-DAG:     ik.constant dense<"0x0000C0{{7F|FF}}"> : tensor<f32>
// SPECIAL-DAG:     ik.constant dense<"0x0000807F"> : tensor<f32>
// SPECIAL-DAG:     ik.constant dense<"0x000080FF"> : tensor<f32>

builtin.module {
  func.func @many_ops(%x: tensor<?x?xf32>, %v: tensor<?xf32>, %t: tensor<?xi64>) -> (tensor<?x?xf32>, tensor<?xf32>, tensor<?x?xf32>, tensor<?x?xf32>, tensor<?xi64>, tensor<4x3xf32>, tensor<?x?xf32>, tensor<3x3xf64>, tensor<?xf32>, tensor<?x?xf32>, tensor<?x1xf32>, tensor<?x?xi32>, tensor<?x?xf32>, tensor<?xf32>, tensor<?xf32>, tensor<3xi1>) {
    %0 = ik.slice %x {spec = "1:3, ::2"} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.constant dense<0> : tensor<i64>
    %2 = ik.dim %x : (tensor<?x?xf32>) -> tensor<i64>
    %3 = ik.constant dense<1> : tensor<i64>
    %4 = ik.arange %1, %2, %3 : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
    %5 = ik.gather %x, %4, %t {axes = array<i64: 0, 1>} : (tensor<?x?xf32>, tensor<?xi64>, tensor<?xi64>) -> tensor<?xf32>
    %6 = ik.concatenate %x, %x {axis = 1 : i64} : (tensor<?x?xf32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    %7 = ik.constant dense<0.000000e+00> : tensor<f32>
    %8 = ik.constant dense<1.000000e+00> : tensor<f32>
    %9 = ik.clip %x, %7, %8 : (tensor<?x?xf32>, tensor<f32>, tensor<f32>) -> tensor<?x?xf32>
    %10 = ik.argmax %x {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xi64>
    %11 = ik.broadcast_to %v {shape = array<i64: 4, 3>} : (tensor<?xf32>) -> tensor<4x3xf32>
    %12 = ik.set_slice %x, %v {spec = "0, :"} : (tensor<?x?xf32>, tensor<?xf32>) -> tensor<?x?xf32>
    %13 = ik.eye {shape = array<i64: 3, 3>} : () -> tensor<3x3xf64>
    %14 = ik.sum %x {axes = array<i64: 0>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %15 = ik.dim %x : (tensor<?x?xf32>) -> tensor<i64>
    %16 = ik.cast %15 : (tensor<i64>) -> tensor<f32>
    %17 = ik.truediv %14, %16 : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    %18 = ik.constant dense<5.000000e-01> : tensor<f32>
    %19 = ik.maximum %x, %18 : (tensor<?x?xf32>, tensor<f32>) -> tensor<?x?xf32>
    %20 = ik.expand_dims %v {axes = array<i64: 1>} : (tensor<?xf32>) -> tensor<?x1xf32>
    %21 = ik.gt %x, %7 : (tensor<?x?xf32>, tensor<f32>) -> tensor<?x?xi1>
    %22 = ik.cast %21 : (tensor<?x?xi1>) -> tensor<?x?xi32>
    %23 = ik.transpose %x {perm = array<i64: 1, 0>} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %24 = ik.matmul %x, %23 : (tensor<?x?xf32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    %25 = ik.softmax %24 {axis = 0 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %26 = ik.exp %x : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %27 = ik.reshape %26 {shape = array<i64: -1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %28 = ik.log %27 : (tensor<?xf32>) -> tensor<?xf32>
    %29 = ik.logsumexp %x {axes = array<i64: 1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %30 = ik.constant dense<[true, false, true]> : tensor<3xi1>
    %31 = ik.constant dense<[1, 2, 3]> : tensor<3xi8>
    %32 = ik.constant dense<2> : tensor<i8>
    %33 = ik.lt %31, %32 : (tensor<3xi8>, tensor<i8>) -> tensor<3xi1>
    %34 = ik.and %30, %33 : (tensor<3xi1>, tensor<3xi1>) -> tensor<3xi1>
    func.return %0, %5, %6, %9, %10, %11, %12, %13, %17, %19, %20, %22, %25, %28, %29, %34 : tensor<?x?xf32>, tensor<?xf32>, tensor<?x?xf32>, tensor<?x?xf32>, tensor<?xi64>, tensor<4x3xf32>, tensor<?x?xf32>, tensor<3x3xf64>, tensor<?xf32>, tensor<?x?xf32>, tensor<?x1xf32>, tensor<?x?xi32>, tensor<?x?xf32>, tensor<?xf32>, tensor<?xf32>, tensor<3xi1>
  }

  // log(-1) = NaN, 1/0 = inf, -1/0 = -inf once folded
  func.func @special_floats() -> (tensor<f32>, tensor<f32>, tensor<f32>) {
    %m = ik.constant dense<-1.000000e+00> : tensor<f32>
    %z = ik.constant dense<0.000000e+00> : tensor<f32>
    %one = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.log %m : (tensor<f32>) -> tensor<f32>
    %1 = ik.truediv %one, %z : (tensor<f32>, tensor<f32>) -> tensor<f32>
    %2 = ik.truediv %m, %z : (tensor<f32>, tensor<f32>) -> tensor<f32>
    func.return %0, %1, %2 : tensor<f32>, tensor<f32>, tensor<f32>
  }
}
