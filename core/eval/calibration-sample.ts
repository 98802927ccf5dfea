/**
 * The built-in sample `cacheblend calibrate` runs when given none: short multi-chunk stories, each chunk
 * a paragraph that is cached on its own, then a continuation the model writes. Plain English, so any
 * tokenizer encodes it; a model trained on another kind of text is better calibrated on its own sample
 * (`--sample`).
 */
export interface CalibrationSet {
  chunks: string[];
  question: string;
}

export const CALIBRATION_SAMPLE: readonly CalibrationSet[] = [
  {
    chunks: [
      'Once upon a time, there was a little girl named Lily. She loved to play in the park with her red ball.',
      'One day, her friend Tom came to the park. He had a big blue kite and a small dog named Max.',
      'The sun was warm and the wind was strong. The kite flew high over the trees.',
    ],
    question: 'Lily looked at the kite and said,',
  },
  {
    chunks: [
      'Ben was a brave boy who lived near the sea. Every morning he walked to the beach with his dad.',
      'His dad had a small boat. It was green and it had a white sail.',
      'One morning the sky was gray and the waves were big. Ben was a little scared.',
    ],
    question: 'His dad held his hand and',
  },
  {
    chunks: [
      'Mia had a cat called Fluffy. Fluffy was soft and white and liked to sleep in the sun.',
      'One day Fluffy did not come home for lunch. Mia looked under the bed and in the garden.',
      'Then she heard a small sound from the big tree next to the house.',
    ],
    question: 'Mia ran to the tree and saw',
  },
  {
    chunks: [
      'The old man lived in a little house in the woods. He liked to bake bread for his friends.',
      'A family of birds lived on his roof. Each day he gave them some crumbs.',
      'In the winter the snow was deep and the birds were hungry and cold.',
    ],
    question: 'The old man opened the door and',
  },
  {
    chunks: [
      'Sam and Anna wanted to build a big castle of sand. They took their buckets to the beach.',
      'Sam dug a deep hole and Anna made tall towers. A crab walked by and looked at them.',
      'Then a big wave came and touched the wall of the castle.',
    ],
    question: 'Anna laughed and said to Sam,',
  },
  {
    chunks: [
      'Lucy found a shiny key in the grass. It was small and gold and very old.',
      'She showed it to her mom. Her mom said it might open the box in the attic.',
      'They climbed the stairs together. The attic was dark and full of dust.',
    ],
    question: 'Lucy put the key in the box and',
  },
];
