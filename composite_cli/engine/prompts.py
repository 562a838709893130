"""Default prompt templates of the built-in step kinds. Modes can replace each one."""

# Together MoA's "aggregate-and-synthesize" prompt (Wang et al. 2024), followed by the candidates.
AGGREGATE = (
    "You have been provided with a set of responses from various models to the latest user query. "
    "Your task is to synthesize these responses into a single, high-quality response. It is crucial "
    "to critically evaluate the information provided in these responses, recognizing that some of it "
    "may be biased or incorrect. Your response should not simply replicate the given answers but "
    "should offer a refined, accurate, and comprehensive reply to the instruction. Ensure your "
    "response is well-structured, coherent, and adheres to the highest standards of accuracy and "
    "reliability.\n\nResponses from models:\n{{ candidates }}"
)

CRITIQUE = (
    "Review the answer you just gave to the user's last message. List any factual errors, "
    "mistakes in reasoning, missing steps or unclear parts, briefly. If the answer is correct and "
    "complete, reply with exactly: NO ISSUES"
)

JUDGE = (
    "Here are {{ candidates | length }} candidate answers to the user's last message:\n\n"
    "{{ candidates }}\n\nWhich candidate answers it best? Reply with the candidate's number only."
)
