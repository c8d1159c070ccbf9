// Hardhat 2.29 configuration for the local Jianzheng dev/test chain.
//
// Hardhat is used only as a JSON-RPC node (`hardhat node`); it never compiles. The contract is
// compiled by contracts/compile.py (pinned solc via chain-dev/solc-shim.js) and deployed from
// Python, so the deployed bytecode is exactly the committed artifact.
//
// Started by service/anchoring/devchain.py as
//   node_modules/.bin/hardhat --config hardhat.config.js node --hostname 127.0.0.1 --port P
"use strict";

const { task } = require("hardhat/config");
const { TASK_COMPILE } = require("hardhat/builtin-tasks/task-names");

// Hardhat's own compile would try to download a solc build (no internet here) and would
// duplicate contracts/compile.py: make it an explicit no-op.
task(TASK_COMPILE, "Disabled: compile with contracts/compile.py").setAction(async () => {
  console.log("hardhat compile is disabled: run `.venv/bin/python contracts/compile.py`");
});

/** @type {import("hardhat/config").HardhatUserConfig} */
module.exports = {
  // Only to silence Hardhat's "Solidity compiler is not configured" notice; never used.
  solidity: "0.8.37",
  defaultNetwork: "hardhat",
  networks: {
    hardhat: {
      chainId: 31337,
      // The contract is compiled for evmVersion "cancun" (see contracts/compile.py); run the
      // same fork so a newer opcode sneaking in fails here rather than on the Besu network.
      hardfork: "cancun",
      // Default accounts: mnemonic "test test ... junk", 20 accounts (see DEV_ACCOUNTS in
      // service/anchoring/devchain.py for the ones Jianzheng uses).
      mining: { auto: true, interval: 0 },
      // Mine failing transactions with status 0 and return their hash, as anvil and Besu do,
      // instead of answering eth_sendRawTransaction with an error. Reverts are then detected
      // the same way on every node (receipt status; revert data from eth_call).
      throwOnTransactionFailures: false,
      loggingEnabled: false,
    },
  },
  paths: {
    // No Solidity sources for Hardhat; keep its cache/artifact folders out of the repo root.
    sources: "./hardhat-no-sources",
    cache: "./.hardhat/cache",
    artifacts: "./.hardhat/artifacts",
  },
};
