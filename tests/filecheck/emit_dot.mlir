// irkit-opt --emit=dot draws the module at whatever level it is: arguments as
// inputs, each op with its parameters and result types, region ops as clusters,
// the return as the outputs node; `dot` reads the text (when Graphviz is there).
// RUN: irkit-opt %s --emit=dot | filecheck %s
// RUN: irkit-opt %s -p default --emit=dot | filecheck %s --check-prefix=LOOPS
// RUN: irkit-opt %s --emit=dot -o %t.dot && (! command -v dot >/dev/null || dot -Tsvg %t.dot -o %t.svg)

func.func @loss(%x: tensor<?x3xf32>, %w: tensor<3xf32>) -> tensor<f32> {
  %0 = ik.mul %x, %w : (tensor<?x3xf32>, tensor<3xf32>) -> tensor<?x3xf32>
  %1 = ik.tanh %0 : (tensor<?x3xf32>) -> tensor<?x3xf32>
  %2 = ik.sum %1 {axes = array<i64: 0, 1>} : (tensor<?x3xf32>) -> tensor<f32>
  func.return %2 : tensor<f32>
}

// CHECK:       digraph "module" {
// CHECK:         subgraph cluster_{{[0-9]+}} {
// CHECK-NEXT:      label="func @loss";
// CHECK-NEXT:      [[X:n[0-9]+]] [label="x\ninput\nfloat32(?, 3)", shape=invhouse
// CHECK-NEXT:      [[W:n[0-9]+]] [label="w\ninput\nfloat32(3,)", shape=invhouse
// CHECK-NEXT:      [[MUL:n[0-9]+]] [label="ik.mul\nfloat32(?, 3)", shape=box
// CHECK-NEXT:      [[TANH:n[0-9]+]] [label="ik.tanh\nfloat32(?, 3)", shape=box
// CHECK-NEXT:      [[SUM:n[0-9]+]] [label="ik.sum\naxes=(0, 1)\nfloat32()", shape=box
// CHECK-NEXT:      [[OUT:n[0-9]+]] [label="outputs", shape=house
// CHECK-NEXT:    }
// CHECK-NEXT:    [[X]] -> [[MUL]];
// CHECK-NEXT:    [[W]] -> [[MUL]];
// CHECK-NEXT:    [[MUL]] -> [[TANH]];
// CHECK-NEXT:    [[TANH]] -> [[SUM]];
// CHECK-NEXT:    [[SUM]] -> [[OUT]] [label="output"];
// CHECK-NEXT:  }

// At the loops level: memrefs, and loops as clusters holding their bodies (the sum in
// blocks: a branch holding the parallel loop over blocks, holding each block's loops).
// LOOPS:       label="func @loss";
// LOOPS:       [[X:n[0-9]+]] [label="x\ninput\nfloat32(?, 3)"
// LOOPS:       subgraph cluster_{{[0-9]+}} {
// LOOPS-NEXT:    label="scf.if";
// LOOPS:         label="scf.parallel";
// LOOPS:         label="body";
// LOOPS:         label="scf.for";
// LOOPS:         memref.load
// LOOPS:       [[X]] -> n{{[0-9]+}};
